/*
 * harness.h - integration test support: free loopback ports, config files,
 * starting and killing real `herald serve` / `herald sim` processes, and
 * HTTP requests with libcurl returning parsed JSON.
 */
#ifndef HR_HARNESS_H
#define HR_HARNESS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct proc {
	pid_t pid;
	char log[512];
};

struct world {
	char dir[256]; /* temp dir, removed by world_free */
	char config[300];
	char db[300];
	int api_port, sim_port;
	char api[64]; /* http://127.0.0.1:PORT */
	char sim[64];
	struct proc serve, simp;
	const char *key; /* the demo tenant's API key */
};

/* Writes a config (see harness.c for the shape) with extra YAML appended
 * under `sim.whatsapp:` (sim_knobs, indented 4 spaces per line, may be NULL)
 * and extra top-level YAML (extra, may be NULL), and picks free ports. */
void world_init(struct world *w, const char *sim_knobs, const char *dispatch_extra);
/* Like world_init, plus YAML inserted into tenant acme's `accounts:` list
 * (items indented 6 spaces: "      - id: acme-sms\n        channel: sms\n...")
 * and into acme's `templates:` list (6 spaces), and sections inserted under
 * `sim:` (indented 2 spaces: "  sms:\n    seed: 1\n"). Any may be NULL. In
 * the YAML, the strings @API@ and @SIM@ are replaced by the gateway's and the
 * simulator's base URLs. */
void world_init2(struct world *w, const char *accounts, const char *templates,
                 const char *sim_sections, const char *sim_knobs, const char *extra);
/* YAML inserted under `server:` by the next world_init/world_init2 (indented
 * 2 spaces, e.g. "  max_connections: 4\n"); NULL for none. */
void harness_server_extra(const char *yaml);
/* YAML inserted into the `tenants:` list by the next world_init/world_init2,
 * after acme (items indented 2 spaces: "  - id: beta\n    name: Beta\n...");
 * NULL for none. @API@ and @SIM@ are replaced as above. */
void harness_tenants_extra(const char *yaml);
/* True when HERALD_IT_STORE=postgres: worlds store in a fresh PostgreSQL
 * database each (w->db is then its conninfo), on one server per process. */
bool harness_postgres(void);
/* With harness_postgres(): stop the worlds' PostgreSQL server (data kept)
 * and start it again (tests/pgtest.h pgtest_server_down/_up). */
void harness_pg_down(void);
void harness_pg_up(void);
void world_start_sim(struct world *w);
void world_start_serve(struct world *w);
/* SIGTERM and wait; asserts a clean exit (0) so ASan leak reports fail tests. */
void world_stop_serve(struct world *w);
void world_kill9_serve(struct world *w);
void world_free(struct world *w);

struct resp {
	long status;
	json_t *json; /* NULL if the body was not JSON */
	char *body;
};
void resp_free(struct resp *r);

/* method "GET"/"POST"; extra_headers NULL-terminated list or NULL. Returns
 * status 0 on connection failure. */
struct resp http(const char *method, const char *url, const char *key, const char *body,
                 const char *const *extra_headers);
/* Same with a whole-request timeout in milliseconds (http() uses 60 s). */
struct resp http_t(const char *method, const char *url, const char *key, const char *body,
                   const char *const *extra_headers, long timeout_ms);
/* Convenience: POST JSON to {api}/path with the world's key. */
struct resp api_post(struct world *w, const char *path, const char *body);
struct resp api_get(struct world *w, const char *path);

/* Polls until pred(w, arg) or timeout_s; returns whether it became true. */
bool wait_until(bool (*pred)(struct world *, void *), struct world *w, void *arg, double timeout_s);

/* The API's message counts by status, from GET /v1/messages?status=X paging. */
long count_status(struct world *w, const char *status);
/* GET /metrics on the world's API port with its key (the demo tenant's,
 * every scope: /metrics needs `metrics:read`). The caller resp_free()s. */
struct resp metrics_get(struct world *w);
/* A free loopback TCP port (for a listener a test configures itself). */
int harness_free_port(void);

/* ---- messages, as the tests read them through the API ---- */

/* GET {api}/path with the world's key; fails the test unless 200 with
 * JSON. The JSON (caller json_decrefs). */
json_t *api_get_json(struct world *w, const char *path);
/* GET /v1/messages/{id} (api_get_json). */
json_t *world_message(struct world *w, const char *id);
/* Waits up to timeout_s for message id to reach status; fails the test
 * otherwise, showing the message. */
void world_wait_status(struct world *w, const char *id, const char *status, double timeout_s);
/* the overview's entry for (channel, code) in GET /v1/stats/daily's
 * top failure codes: its count (-1 when absent), its meaning copied into
 * meaning. */
long world_failure_code(struct world *w, const char *channel, const char *code, char *meaning,
                        size_t size);

/* ---- campaigns ---- */

/* GET /v1/batches/{id} (api_get_json). */
json_t *world_batch(struct world *w, const char *id);
/* A campaign's messages in status (its "messages" counters) and its rows
 * of a kind ("rows": valid, invalid, ...); 0 when absent. */
long batch_messages(json_t *b, const char *status);
long batch_rows(json_t *b, const char *what);
/* POST /v1/batches as a multipart upload with the world's key: the file at
 * path sent as filename, and fields (NULL-terminated name, value pairs; may
 * be NULL). Fails the test when the request cannot be made. The caller
 * resp_free()s. */
struct resp world_upload(struct world *w, const char *path, const char *filename,
                         const char *const *fields);

/* ---- HTTP with the response's headers, and event streams held open ---- */

/* Bytes received, NUL-terminated (p NULL until the first). */
struct hbuf {
	char *p;
	size_t n;
};

struct hresp {
	long status; /* 0 when the request failed */
	char *body;
	size_t len;
	char *headers; /* every response header line, as received */
	json_t *json;  /* NULL if the body was not JSON */
};
void hresp_free(struct hresp *r);

/* method on w's API + path (HEAD: no body asked for), with the header lines
 * given (NULL-terminated, may be NULL; none added) and body (may be NULL);
 * gzip: ask for gzip and undo it; iface: the source address (NULL: the
 * system's). A 20 s timeout. */
struct hresp http_h(struct world *w, const char *method, const char *path,
                    const char *const *headers, const char *body, bool gzip, const char *iface);
/* The value of response header name ("" when absent), copied into a static
 * buffer (one at a time). */
const char *hresp_header(const struct hresp *r, const char *name);

/* A GET held open on a multi handle (Server-Sent Events). multi is a
 * CURLM * (curl/curl.h is left out here: it declares send(), a name tests
 * use). */
struct curl_slist;
struct hstream {
	void *c; /* CURL * */
	struct curl_slist *h;
	struct hbuf b; /* the body so far */
	long status;   /* the caller's to fill (stream heads) */
	bool done;     /* the transfer ended */
};
/* Adds a GET of w's API + path with the header lines given to multi. */
void hstream_open(void *multi, struct world *w, struct hstream *st, const char *path,
                  const char *const *headers);
/* Removes st from multi and frees it; nothing when it is not open. */
void hstream_close(void *multi, struct hstream *st);
/* Drives every stream of multi until pred(arg) or timeout_s; returns
 * pred's last answer. A stream whose transfer ended is marked done. */
bool hstreams_until(void *multi, bool (*pred)(void *), void *arg, double timeout_s);

#endif
