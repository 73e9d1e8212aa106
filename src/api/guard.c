/*
 * guard.c - what one client can hold of the HTTP server, and for how long.
 *
 * Admission: every accepted socket passes api_guard_accept (MHD's accept-policy
 * callback) before MHD gives it a connection. It is refused at once (MHD
 * closes it) when the server already holds max_connections, or when its
 * address already holds max_connections_per_ip. MHD's own connection limit
 * is set above ours (api_guard_mhd_limit) so MHD never stops accepting:
 * when MHD reaches its limit it leaves new sockets in the listen backlog,
 * where they wait unanswered instead of being refused, which is how 150 idle
 * sockets against a limit of 100 used to stall everyone for 30 s.
 *
 * Deadlines: MHD's connection timeout counts only silence, so a client that
 * sends a byte a second holds its connection forever. The guard tracks each
 * connection's current request: its head (request line and headers) must be
 * complete within head_us of the request's start (the connection's start,
 * or the end of the previous response on a kept-alive connection), and its
 * body must arrive within body_us plus one second for every min_rate bytes
 * received (Apache's mod_reqtimeout rule: a slow but steady upload lives, a
 * trickle does not). A reaper thread walks the connections a few times a
 * second and shuts down the socket of any that missed its deadline; MHD then
 * sees the end of the stream and closes the connection itself. Once the
 * request is complete (or answered early), it has no guard deadline: it may
 * be suspended waiting for the writer or a provider's answer, and MHD's own
 * timeout covers a client that stops reading the response.
 *
 * Why the socket is safe to shut down from another thread: MHD notifies
 * MHD_CONNECTION_NOTIFY_CLOSED before it closes the descriptor (daemon.c,
 * MHD_cleanup_connections and the cleanup path of new_connection_process_,
 * libmicrohttpd 0.9.75), and that notification unlinks the connection under
 * g->lock, the lock the reaper holds while it shuts sockets down. So the
 * reaper never touches a descriptor that could have been closed and reused.
 *
 * Counting is exact: api_guard_accept reserves the slot under the lock and hands
 * the reservation to the MHD_CONNECTION_NOTIFY_STARTED that follows on the
 * same thread (MHD calls both from internal_add_connection, one after the
 * other, for every socket it accepts itself). If MHD drops the socket in
 * between (out of memory), the next api_guard_accept on that thread returns the
 * stray reservation.
 */
#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <netinet/in.h>

#include "api/api_int.h"
#include "obs/metrics.h"

/* Connections MHD may hold beyond ours, so it keeps accepting (and we keep
 * refusing) at our limit. MHD splits its limit among its threads and a
 * thread at its share stops accepting, but they cannot all be at their
 * share while the guard holds fewer than MHD's total: one always accepts. */
#define GUARD_MHD_SLACK 64
/* The reaper's period bounds how late a deadline is enforced. */
#define GUARD_TICK_MAX_US 250000
#define GUARD_TICK_MIN_US 20000
/* Refusals and cuts are logged as one summary line at most this often. */
#define GUARD_LOG_EVERY_US 1000000

/* Connections from one address: an IPv4 address, or an IPv6 /64 (one
 * subscriber's prefix; counting single IPv6 addresses limits nothing). */
struct guard_addr {
	struct guard_addr *next; /* hash chain */
	uint8_t key[16];
	int count;
};

enum guard_phase {
	GUARD_HEAD,  /* waiting for the request line and headers */
	GUARD_BODY,  /* headers in, body arriving */
	GUARD_READY, /* request complete or answered: no guard deadline */
};

struct guard_conn {
	struct guard_conn *prev, *next;
	struct guard_addr *addr;
	MHD_socket fd;
	enum guard_phase phase;
	int64_t since_us; /* HEAD: when the request began; BODY: when its head was in */
	uint64_t body_bytes;
	bool cut;
};

struct api_guard {
	pthread_mutex_t lock;
	pthread_cond_t wake;
	pthread_t reaper;
	bool stop;
	bool closed; /* api_guard_close: every new socket is refused */
	struct api_guard_limits lim;
	int64_t tick_us;
	int total;
	struct guard_conn *conns;
	struct guard_addr **buckets;
	size_t nbuckets; /* a power of two */
	/* Since the last summary log line. */
	int refused_total, refused_addr, cut_head, cut_body, shutdown_errno;
	int64_t logged_us;
};

/* The reservation api_guard_accept hands to the STARTED notification that follows
 * on the same MHD thread: the address's slot, taken for guard reserved_for. */
static _Thread_local struct api_guard *reserved_for;
static _Thread_local struct guard_addr *reserved_addr;

static void guard_addr_key(const struct sockaddr *sa, socklen_t len, uint8_t key[16])
{
	static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	memset(key, 0, 16);
	if (sa && sa->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		memcpy(key, v4mapped, 12);
		memcpy(key + 12, &in->sin_addr, 4);
	} else if (sa && sa->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
		const uint8_t *b = in6->sin6_addr.s6_addr;
		if (memcmp(b, v4mapped, 12) == 0)
			memcpy(key, b, 16); /* an IPv4 client on a dual-stack socket */
		else
			memcpy(key, b, 8);
	}
}

static size_t guard_hash(const struct api_guard *g, const uint8_t key[16])
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a */
	for (int i = 0; i < 16; i++)
		h = (h ^ key[i]) * 1099511628211ULL;
	return (size_t)(h & (g->nbuckets - 1));
}

/* The address's entry, created with count 0 if new; NULL when out of memory.
 * Caller holds g->lock. */
static struct guard_addr *guard_addr_get(struct api_guard *g, const uint8_t key[16])
{
	struct guard_addr **head = &g->buckets[guard_hash(g, key)];
	for (struct guard_addr *a = *head; a; a = a->next)
		if (memcmp(a->key, key, 16) == 0)
			return a;
	struct guard_addr *a = calloc(1, sizeof *a);
	if (!a)
		return NULL;
	memcpy(a->key, key, 16);
	a->next = *head;
	*head = a;
	return a;
}

/* Frees the address's entry once no connection uses it. Caller holds g->lock. */
static void guard_addr_put(struct api_guard *g, struct guard_addr *a)
{
	if (a->count > 0)
		return;
	struct guard_addr **pp = &g->buckets[guard_hash(g, a->key)];
	while (*pp != a)
		pp = &(*pp)->next;
	*pp = a->next;
	free(a);
}

/* Gives back one connection's slot. Caller holds g->lock. */
static void guard_release(struct api_guard *g, struct guard_addr *a)
{
	g->total--;
	a->count--;
	guard_addr_put(g, a);
}

enum MHD_Result api_guard_accept(void *cls, const struct sockaddr *sa, socklen_t len)
{
	struct api_guard *g = cls;
	uint8_t key[16];
	guard_addr_key(sa, len, key);
	pthread_mutex_lock(&g->lock);
	if (reserved_for == g && reserved_addr) {
		guard_release(g, reserved_addr); /* MHD dropped the last one */
		reserved_addr = NULL;
	}
	enum MHD_Result ok = MHD_NO;
	struct guard_addr *a = NULL;
	/* Out of memory for the address's entry: refuse rather than count wrong. */
	if (g->closed) {
		/* stopping: MHD closes the socket at once */
	} else if (g->total >= g->lim.max_connections || !(a = guard_addr_get(g, key))) {
		g->refused_total++;
		metrics_http_guard(M_GUARD_REFUSED_LIMIT);
	} else if (g->lim.max_per_addr > 0 && a->count >= g->lim.max_per_addr) {
		g->refused_addr++;
		metrics_http_guard(M_GUARD_REFUSED_ADDR);
	} else {
		a->count++;
		g->total++;
		reserved_for = g;
		reserved_addr = a;
		ok = MHD_YES;
	}
	if (a && a->count == 0)
		guard_addr_put(g, a); /* created for a refused socket */
	pthread_mutex_unlock(&g->lock);
	return ok;
}

static void guard_started(struct api_guard *g, struct MHD_Connection *c, void **ctx)
{
	const union MHD_ConnectionInfo *fdi =
	    MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
	struct guard_conn *gc = calloc(1, sizeof *gc);
	pthread_mutex_lock(&g->lock);
	/* Always set: every socket comes through api_guard_accept on this
	 * thread just before (Herald never calls MHD_add_connection). */
	struct guard_addr *a = reserved_for == g ? reserved_addr : NULL;
	reserved_addr = NULL;
	assert(a);
	if (!gc || !a || !fdi) {
		/* Cannot track it, so cannot bound it: close it now. */
		if (a)
			guard_release(g, a);
		pthread_mutex_unlock(&g->lock);
		free(gc);
		if (fdi)
			shutdown(fdi->connect_fd, SHUT_RDWR);
		*ctx = NULL;
		return;
	}
	gc->addr = a;
	gc->fd = fdi->connect_fd;
	gc->phase = GUARD_HEAD;
	gc->since_us = hr_mono_us();
	gc->next = g->conns;
	if (g->conns)
		g->conns->prev = gc;
	g->conns = gc;
	pthread_mutex_unlock(&g->lock);
	*ctx = gc;
}

void api_guard_notify(void *cls, struct MHD_Connection *c, void **ctx,
                      enum MHD_ConnectionNotificationCode code)
{
	struct api_guard *g = cls;
	if (code == MHD_CONNECTION_NOTIFY_STARTED) {
		guard_started(g, c, ctx);
		return;
	}
	struct guard_conn *gc = *ctx;
	if (!gc)
		return;
	pthread_mutex_lock(&g->lock);
	if (gc->prev)
		gc->prev->next = gc->next;
	else
		g->conns = gc->next;
	if (gc->next)
		gc->next->prev = gc->prev;
	guard_release(g, gc->addr);
	pthread_mutex_unlock(&g->lock);
	free(gc);
	*ctx = NULL;
}

/* ---------------------------------------------------------------------------
 * The request's progress, reported by server.c from the MHD thread that
 * serves the connection.
 * ------------------------------------------------------------------------- */

struct guard_conn *api_guard_conn(struct MHD_Connection *c)
{
	const union MHD_ConnectionInfo *i =
	    MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	return i ? i->socket_context : NULL;
}

static void guard_phase(struct api_guard *g, struct guard_conn *gc, enum guard_phase p)
{
	if (!gc)
		return;
	int64_t now = hr_mono_us();
	pthread_mutex_lock(&g->lock);
	gc->phase = p;
	gc->since_us = now;
	gc->body_bytes = 0;
	pthread_mutex_unlock(&g->lock);
}

void api_guard_head_done(struct api_guard *g, struct guard_conn *gc)
{
	guard_phase(g, gc, GUARD_BODY);
}

void api_guard_body(struct api_guard *g, struct guard_conn *gc, size_t n)
{
	if (!gc)
		return;
	pthread_mutex_lock(&g->lock);
	gc->body_bytes += n;
	pthread_mutex_unlock(&g->lock);
}

void api_guard_ready(struct api_guard *g, struct guard_conn *gc)
{
	guard_phase(g, gc, GUARD_READY);
}

void api_guard_request_done(struct api_guard *g, struct guard_conn *gc)
{
	guard_phase(g, gc, GUARD_HEAD);
}

/* ---------------------------------------------------------------------------
 * The reaper.
 * ------------------------------------------------------------------------- */

static int64_t guard_deadline(const struct api_guard *g, const struct guard_conn *gc)
{
	if (gc->phase == GUARD_HEAD)
		return gc->since_us + g->lim.head_us;
	/* 1 s more for every min_rate bytes received, in integer microseconds
	 * (body_bytes is at most the body limit, so this cannot overflow). */
	return gc->since_us + g->lim.body_us +
	       (int64_t)(gc->body_bytes * 1000000 / (uint64_t)g->lim.min_rate);
}

/* Shuts down every connection past its deadline. Caller holds g->lock.
 * Returns true, with a summary of what was refused and cut since the last
 * one in msg, at most once every GUARD_LOG_EVERY_US. */
static bool guard_sweep(struct api_guard *g, int64_t now, char *msg, size_t size)
{
	for (struct guard_conn *gc = g->conns; gc; gc = gc->next) {
		if (gc->cut || gc->phase == GUARD_READY || now < guard_deadline(g, gc))
			continue;
		/* MHD reads the end of the stream and closes the connection on
		 * its own thread; the descriptor stays ours until CLOSED. */
		if (shutdown(gc->fd, SHUT_RDWR) != 0 && errno != ENOTCONN)
			g->shutdown_errno = errno;
		gc->cut = true;
		if (gc->phase == GUARD_HEAD) {
			g->cut_head++;
			metrics_http_guard(M_GUARD_CUT_HEAD);
		} else {
			g->cut_body++;
			metrics_http_guard(M_GUARD_CUT_BODY);
		}
	}
	if (now - g->logged_us < GUARD_LOG_EVERY_US ||
	    !(g->refused_total | g->refused_addr | g->cut_head | g->cut_body | g->shutdown_errno))
		return false;
	size_t n = (size_t)snprintf(msg, size, "connections (%d open now):", g->total);
	if (g->refused_total && n < size)
		n += (size_t)snprintf(msg + n, size - n, " refused %d over the limit of %d;",
		                      g->refused_total, g->lim.max_connections);
	if (g->refused_addr && n < size)
		n += (size_t)snprintf(msg + n, size - n, " refused %d over %d per address;",
		                      g->refused_addr, g->lim.max_per_addr);
	if (g->cut_head && n < size)
		n += (size_t)snprintf(msg + n, size - n,
		                      " closed %d whose request head took over %lld ms;",
		                      g->cut_head, (long long)(g->lim.head_us / 1000));
	if (g->cut_body && n < size)
		n += (size_t)snprintf(msg + n, size - n,
		                      " closed %d whose body came slower than %d B/s;", g->cut_body,
		                      g->lim.min_rate);
	if (g->shutdown_errno && n < size)
		snprintf(msg + n, size - n, " shutdown failed: %s;", strerror(g->shutdown_errno));
	n = strlen(msg);
	if (n && msg[n - 1] == ';')
		msg[n - 1] = '\0';
	g->refused_total = g->refused_addr = g->cut_head = g->cut_body = g->shutdown_errno = 0;
	g->logged_us = now;
	return true;
}

static void *guard_reaper(void *arg)
{
	struct api_guard *g = arg;
	char msg[512];
	pthread_mutex_lock(&g->lock);
	while (!g->stop) {
		if (guard_sweep(g, hr_mono_us(), msg, sizeof msg)) {
			/* The log writes to stderr: never under the lock that every
			 * accept and every request's progress takes. */
			pthread_mutex_unlock(&g->lock);
			hr_log(HR_LOG_WARN, "http", "%s", msg);
			pthread_mutex_lock(&g->lock);
			if (g->stop)
				break;
		}
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		int64_t ns = ts.tv_nsec + (g->tick_us % 1000000) * 1000;
		ts.tv_sec += (time_t)(g->tick_us / 1000000 + ns / 1000000000);
		ts.tv_nsec = (long)(ns % 1000000000);
		int rc = pthread_cond_timedwait(&g->wake, &g->lock, &ts);
		assert(rc == 0 || rc == ETIMEDOUT);
		(void)rc;
	}
	pthread_mutex_unlock(&g->lock);
	return NULL;
}

/* ---------------------------------------------------------------------------
 * Life cycle.
 * ------------------------------------------------------------------------- */

int api_guard_new(const struct api_guard_limits *lim, struct api_guard **out, struct hr_err *err)
{
	if (lim->max_connections < 1 || lim->max_per_addr < 0 || lim->head_us <= 0 ||
	    lim->body_us <= 0 || lim->min_rate < 1)
		return hr_fail(err, HR_EINVAL, "server", "connection limits must be positive");
	struct api_guard *g = calloc(1, sizeof *g);
	if (!g)
		return hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	g->lim = *lim;
	/* Buckets: a power of two near the connection limit, so chains stay
	 * short without a resize (an entry exists only while it has a
	 * connection, so there are never more entries than connections). */
	g->nbuckets = 64;
	while (g->nbuckets < (size_t)lim->max_connections && g->nbuckets < (1u << 16))
		g->nbuckets <<= 1;
	g->buckets = calloc(g->nbuckets, sizeof(struct guard_addr *));
	int64_t t = (lim->head_us < lim->body_us ? lim->head_us : lim->body_us) / 4;
	g->tick_us = t > GUARD_TICK_MAX_US   ? GUARD_TICK_MAX_US
	             : t < GUARD_TICK_MIN_US ? GUARD_TICK_MIN_US
	                                     : t;
	pthread_condattr_t ca;
	int rc = g->buckets ? pthread_condattr_init(&ca) : ENOMEM;
	if (rc == 0) {
		rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		if (rc == 0)
			rc = pthread_cond_init(&g->wake, &ca);
		pthread_condattr_destroy(&ca);
	}
	if (rc == 0 && (rc = pthread_mutex_init(&g->lock, NULL)) != 0)
		pthread_cond_destroy(&g->wake);
	if (rc == 0 && (rc = pthread_create(&g->reaper, NULL, guard_reaper, g)) != 0) {
		pthread_mutex_destroy(&g->lock);
		pthread_cond_destroy(&g->wake);
	}
	if (rc != 0) {
		free(g->buckets);
		free(g);
		return hr_fail(err, rc == ENOMEM ? HR_ENOMEM : HR_EIO, NULL,
		               "cannot start the connection reaper: %s", strerror(rc));
	}
	pthread_setname_np(g->reaper, "http-reaper");
	*out = g;
	return 0;
}

void api_guard_close(struct api_guard *g)
{
	pthread_mutex_lock(&g->lock);
	g->closed = true;
	pthread_mutex_unlock(&g->lock);
}

unsigned api_guard_mhd_limit(const struct api_guard *g)
{
	return (unsigned)g->lim.max_connections + GUARD_MHD_SLACK;
}

int api_guard_open(struct api_guard *g)
{
	pthread_mutex_lock(&g->lock);
	int n = g->total;
	pthread_mutex_unlock(&g->lock);
	return n;
}

/* Call after MHD_stop_daemon: every connection has been notified CLOSED. */
void api_guard_free(struct api_guard *g)
{
	if (!g)
		return;
	pthread_mutex_lock(&g->lock);
	g->stop = true;
	pthread_cond_signal(&g->wake);
	pthread_mutex_unlock(&g->lock);
	pthread_join(g->reaper, NULL);
	assert(g->conns == NULL);
	for (size_t i = 0; i < g->nbuckets; i++)
		while (g->buckets[i]) {
			struct guard_addr *a = g->buckets[i];
			g->buckets[i] = a->next;
			free(a);
		}
	free(g->buckets);
	pthread_mutex_destroy(&g->lock);
	pthread_cond_destroy(&g->wake);
	free(g);
}
