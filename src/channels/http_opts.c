/*
 * http_opts.c - the libcurl options every request Herald makes to a provider
 * carries, set in one place for the dispatcher's sends and the applier's
 * follow-ups, each one checked: a request missing an option (no timeout, any
 * protocol allowed) must never go out.
 */
#include <curl/curl.h>

#include "channels/channel.h"

#define CONNECT_TIMEOUT_MAX_MS 5000L

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
	if (r->userpwd)
		HTTP_SET(CURLOPT_USERPWD, r->userpwd);
	HTTP_SET(CURLOPT_NOSIGNAL, 1L);
	HTTP_SET(CURLOPT_TIMEOUT_MS, timeout_ms);
	HTTP_SET(CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
#undef HTTP_SET
	return 0;
fail:
	/* Out of memory may pass; any other refusal (an option this libcurl
	 * lacks, a URL over its length limit) will recur on every attempt. */
	return hr_fail(err, cc == CURLE_OUT_OF_MEMORY ? HR_ENOMEM : HR_EINTERNAL, NULL,
	               "libcurl refused %s: %s", what, curl_easy_strerror(cc));
}
