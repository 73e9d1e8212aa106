/*
 * metrics_listen.c - the scrape listener (server.metrics_listen): a second,
 * small libmicrohttpd daemon that answers GET /metrics without a credential
 * and nothing else, for a Prometheus that scrapes over a network the
 * operator keeps private (a loopback or management address). The main
 * port's /metrics needs `metrics:read` whether or not this one runs.
 *
 * It shares nothing with the API's request path: no routing table, no
 * authentication, no bodies (a request with one is refused before it is
 * read), a handful of connections on one thread, each with a short
 * timeout, so a client on this address can cost a render of the metrics
 * and no more. A render reads a few rows of the store whatever it holds
 * (store.h message_gauges).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "api/api_int.h"
#include "obs/metrics.h"

/* Scrapers are few: a Prometheus pair, an operator's curl. */
#define ML_CONNECTIONS 16
#define ML_TIMEOUT_S 10
#define ML_POOL_BYTES (32u << 10)

static enum MHD_Result ml_respond(struct MHD_Connection *c, unsigned status, char *body, size_t len,
                                  const char *ctype)
{
	struct MHD_Response *resp =
	    body ? MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE)
	         : MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
	if (!resp) {
		free(body);
		return MHD_NO;
	}
	if (ctype &&
	    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype) != MHD_YES) {
		MHD_destroy_response(resp);
		return MHD_NO;
	}
	enum MHD_Result ret = MHD_queue_response(c, status, resp);
	MHD_destroy_response(resp);
	if (ret == MHD_YES)
		metrics_http((int)status);
	return ret;
}

static enum MHD_Result ml_text(struct MHD_Connection *c, unsigned status, const char *msg)
{
	char *b = strdup(msg);
	return ml_respond(c, status, b, b ? strlen(b) : 0, "text/plain; charset=utf-8");
}

/* Answers on the first call, with the head only: a body is never read. */
static enum MHD_Result ml_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
	(void)version;
	(void)upload_data;
	(void)upload_data_size;
	(void)con_cls;
	struct api_server *s = cls;
	if (strcmp(url, "/metrics") != 0)
		return ml_text(c, MHD_HTTP_NOT_FOUND,
		               "not found: this listener serves /metrics only\n");
	if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
		return ml_text(c, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed (GET, HEAD)\n");
	const char *cl =
	    MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
	const char *te =
	    MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING);
	if ((cl && strcmp(cl, "0") != 0) || te)
		return ml_text(c, MHD_HTTP_CONTENT_TOO_LARGE, "a scrape has no body\n");
	char *out;
	size_t len;
	int rc = metrics_render(s->o.store, &out, &len);
	if (rc != 0) {
		hr_log(HR_LOG_ERROR, "api", "metrics listener: rendering failed: %s",
		       hr_code_name(rc));
		return ml_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "metrics unavailable\n");
	}
	return ml_respond(c, MHD_HTTP_OK, out, len, "text/plain; version=0.0.4; charset=utf-8");
}

static void ml_log(void *cls, const char *fmt, va_list ap)
{
	(void)cls;
	char msg[256];
	vsnprintf(msg, sizeof msg, fmt, ap);
	msg[strcspn(msg, "\n")] = '\0';
	hr_log(HR_LOG_DEBUG, "api", "metrics listener: %s", msg);
}

int api_metrics_listen_start(struct api_server *s, struct hr_err *err)
{
	const char *host = s->o.metrics_listen_addr;
	if (!host)
		return 0;
	if (s->o.metrics_port < 0 || s->o.metrics_port > 65535)
		return hr_fail(err, HR_EINVAL, "server.metrics_listen", "port %d out of range",
		               s->o.metrics_port);
	union {
		struct sockaddr sa;
		struct sockaddr_in in4;
		struct sockaddr_in6 in6;
	} addr;
	memset(&addr, 0, sizeof addr);
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG;
	if (inet_pton(AF_INET, host, &addr.in4.sin_addr) == 1) {
		addr.in4.sin_family = AF_INET;
		addr.in4.sin_port = htons((uint16_t)s->o.metrics_port);
	} else if (inet_pton(AF_INET6, host, &addr.in6.sin6_addr) == 1) {
		addr.in6.sin6_family = AF_INET6;
		addr.in6.sin6_port = htons((uint16_t)s->o.metrics_port);
		flags |= MHD_USE_IPv6;
	} else {
		return hr_fail(err, HR_EINVAL, "server.metrics_listen", "not an IP address: %s",
		               host);
	}
	s->metrics_mhd = MHD_start_daemon(
	    flags, 0, NULL, NULL, ml_request, s, MHD_OPTION_EXTERNAL_LOGGER, ml_log, NULL,
	    MHD_OPTION_SOCK_ADDR, &addr.sa, MHD_OPTION_CONNECTION_LIMIT, (unsigned)ML_CONNECTIONS,
	    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)ML_TIMEOUT_S,
	    MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)ML_POOL_BYTES, MHD_OPTION_END);
	if (!s->metrics_mhd) {
		int e = errno;
		return hr_fail(err, HR_EIO, "server.metrics_listen", "cannot listen on %s:%d: %s",
		               host, s->o.metrics_port,
		               e ? strerror(e) : "libmicrohttpd refused the options");
	}
	hr_log(HR_LOG_INFO, "api", "metrics listener on %s:%d (GET /metrics, no credential)", host,
	       api_metrics_port(s));
	return 0;
}

void api_metrics_listen_stop(struct api_server *s)
{
	if (s && s->metrics_mhd) {
		MHD_stop_daemon(s->metrics_mhd);
		s->metrics_mhd = NULL;
	}
}

int api_metrics_port(const struct api_server *s)
{
	if (!s->metrics_mhd)
		return -1;
	const union MHD_DaemonInfo *info =
	    MHD_get_daemon_info(s->metrics_mhd, MHD_DAEMON_INFO_BIND_PORT);
	return info ? (int)info->port : -1;
}
