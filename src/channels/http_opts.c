/*
 * http_opts.c - the libcurl options every request Herald makes to a provider
 * carries, set in one place for the dispatcher's sends and the applier's
 * follow-ups, each one checked: a request missing an option (no timeout, any
 * protocol allowed) must never go out.
 */
#include <curl/curl.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "channels/channel.h"

#define CONNECT_TIMEOUT_MAX_MS 5000L

/* dispatch.ca_file: written once at start, read-only after. */
static char *g_ca_file;

int http_set_ca_file(const char *path, struct hr_err *err)
{
	free(g_ca_file);
	g_ca_file = NULL;
	if (!path || !*path)
		return 0;
	if (access(path, R_OK) != 0)
		return hr_fail(err, HR_EINVAL, "dispatch.ca_file", "dispatch.ca_file %s: %s", path,
		               strerror(errno));
	g_ca_file = strdup(path);
	return g_ca_file ? 0 : hr_fail(err, HR_ENOMEM, NULL, "out of memory");
}

/* libcurl's default CA path (/etc/ssl/certs on Debian) stays set beside the
 * file, so the system's CAs are still trusted. */
CURLcode http_set_tls(CURL *e)
{
	return g_ca_file ? curl_easy_setopt(e, CURLOPT_CAINFO, g_ca_file) : CURLE_OK;
}

int http_req_setopts(CURL *e, const struct http_req *r, long timeout_ms, struct hr_err *err)
{
	CURLcode cc;
	const char *what = NULL;
	long connect_ms = timeout_ms < CONNECT_TIMEOUT_MAX_MS ? timeout_ms : CONNECT_TIMEOUT_MAX_MS;
	/* Sets one option; on failure remembers which and stops. */
#define HTTP_SET(opt, val)                                                                         \
	do {                                                                                       \
		if ((cc = curl_easy_setopt(e, opt, val)) != CURLE_OK) {                            \
			what = #opt;                                                               \
			goto fail;                                                                 \
		}                                                                                  \
	} while (0)
	HTTP_SET(CURLOPT_URL, r->url);
	/* Only http(s), also after a redirect, and no redirect is followed: a
	 * provider's 3xx is its answer (classified like any other status), and
	 * following it could carry the account's credentials (an Authorization
	 * header or Basic auth) to a host the account never named. */
	HTTP_SET(CURLOPT_PROTOCOLS_STR, "http,https");
	HTTP_SET(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	HTTP_SET(CURLOPT_FOLLOWLOCATION, 0L);
	HTTP_SET(CURLOPT_POST, 1L);
	HTTP_SET(CURLOPT_POSTFIELDS, r->body ? r->body : "");
	HTTP_SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(r->body ? r->body_len : 0));
	HTTP_SET(CURLOPT_HTTPHEADER, r->headers);
	/* Set (or cleared) on every request: the dispatcher reuses a handle
	 * for the next send without curl_easy_reset, and a send of another
	 * account must not go out with this one's credentials. */
	HTTP_SET(CURLOPT_USERPWD, r->userpwd);
	HTTP_SET(CURLOPT_NOSIGNAL, 1L);
	HTTP_SET(CURLOPT_TIMEOUT_MS, timeout_ms);
	HTTP_SET(CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
	/* HTTP/2 where the provider offers it over TLS (ALPN; Meta's Graph API
	 * does), HTTP/1.1 otherwise. Over TLS a transfer waits for a connection
	 * being made to the same host rather than opening one more, so that
	 * sends on a multiplexing multi handle share one connection; ALPN tells
	 * at the handshake whether it multiplexes. Not over plain http: libcurl
	 * learns that a connection does not multiplex only from its first
	 * answer, and every send to a slow HTTP/1.1 host would wait for it. */
	HTTP_SET(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
	HTTP_SET(CURLOPT_PIPEWAIT, r->url && strncasecmp(r->url, "https://", 8) == 0 ? 1L : 0L);
	if (g_ca_file)
		HTTP_SET(CURLOPT_CAINFO, g_ca_file);
#undef HTTP_SET
	return 0;
fail:
	/* Out of memory may pass; any other refusal (an option this libcurl
	 * lacks, a URL over its length limit) will recur on every attempt. */
	return hr_fail(err, cc == CURLE_OUT_OF_MEMORY ? HR_ENOMEM : HR_EINTERNAL, NULL,
	               "libcurl refused %s: %s", what, curl_easy_strerror(cc));
}
