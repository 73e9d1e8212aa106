/*
 * datasource.c - the registry of external data sources: config, the
 * connection pool of each source, placeholder translation, the one retry,
 * and error texts naming the source. The drivers (ds_*.c) only connect and
 * run one statement.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "herald.h"
#include "plugins/ds_int.h"

struct ds_source {
	struct hr_ds_conf *conf; /* borrowed from the registry's array */
	const struct ds_driver *drv;
	pthread_mutex_t mu;
	pthread_cond_t cv; /* a connection came back or a slot freed */
	void **idle;       /* pool_size entries, nidle used (a stack: warm first) */
	int nidle;
	int open; /* idle + in use + being opened; never above pool_size */
	int peak;
	long long opened;
};

struct ds_registry {
	struct hr_ds_conf *conf;
	size_t n;
	struct ds_source *src;
};

int ds_ms_left(int64_t deadline_us)
{
	int64_t left = deadline_us - hr_mono_us();
	if (left <= 0)
		return 0;
	left = (left + 999) / 1000;
	return left > 0x7fffffff ? 0x7fffffff : (int)left;
}

int ds_wait_fd(int fd, short events, int64_t deadline_us)
{
	for (;;) {
		struct pollfd p = {.fd = fd, .events = events};
		int ms = ds_ms_left(deadline_us);
		int rc = poll(&p, 1, ms);
		if (rc > 0)
			return 1;
		if (rc == 0)
			return ms == 0 || ds_ms_left(deadline_us) == 0 ? 0 : 1;
		if (errno != EINTR)
			return -1;
	}
}

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	if (!err || errlen == 0)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* ---------------------------------------------------------------------------
 * Placeholders
 * ------------------------------------------------------------------------- */

/* Length of a $tag$ opening at s (s[0] == '$'), 0 if it is not one. */
static size_t dollar_tag(const char *s)
{
	size_t i = 1;
	if (s[1] >= '0' && s[1] <= '9')
		return 0; /* $1 is a parameter, not a tag */
	while ((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z') ||
	       (s[i] >= '0' && s[i] <= '9') || s[i] == '_')
		i++;
	return s[i] == '$' ? i + 1 : 0;
}

int ds_sql_translate(const char *sql, enum ds_placeholder ph, int nparams, char **out, int **order,
                     int *norder, char *err, size_t errlen)
{
	size_t len = strlen(sql);
	/* "?N" never grows: "$N" has as many bytes and "?" fewer. */
	char *o = malloc(len + 1);
	int *ord = malloc((len / 2 + 1) * sizeof *ord);
	size_t w = 0;
	int k = 0;
	*out = NULL;
	*order = NULL;
	*norder = 0;
	if (!o || !ord) {
		free(o);
		free(ord);
		set_err(err, errlen, "out of memory");
		return -1;
	}
	for (size_t i = 0; i < len;) {
		char c = sql[i];
		if (c == '\'' || c == '"' || c == '`') {
			size_t j = i + 1;
			while (j < len) {
				if (c == '\'' && sql[j] == '\\' && j + 1 < len) {
					j += 2;
					continue;
				}
				if (sql[j] == c) {
					if (j + 1 < len && sql[j + 1] == c) {
						j += 2;
						continue;
					}
					break;
				}
				j++;
			}
			if (j >= len) {
				set_err(err, errlen, "SQL has an unterminated %c quote at byte %zu",
				        c, i + 1);
				goto fail;
			}
			memcpy(o + w, sql + i, j + 1 - i);
			w += j + 1 - i;
			i = j + 1;
		} else if (c == '-' && sql[i + 1] == '-') {
			size_t j = i;
			while (j < len && sql[j] != '\n')
				j++;
			memcpy(o + w, sql + i, j - i);
			w += j - i;
			i = j;
		} else if (c == '/' && sql[i + 1] == '*') {
			const char *e = strstr(sql + i + 2, "*/");
			size_t j = e ? (size_t)(e - sql) + 2 : len;
			memcpy(o + w, sql + i, j - i);
			w += j - i;
			i = j;
		} else if (c == '$' && dollar_tag(sql + i)) {
			size_t tl = dollar_tag(sql + i);
			char tag[64];
			if (tl >= sizeof tag) {
				set_err(err, errlen,
				        "SQL has a dollar-quote tag too long at byte %zu", i + 1);
				goto fail;
			}
			memcpy(tag, sql + i, tl);
			tag[tl] = '\0';
			const char *e = strstr(sql + i + tl, tag);
			if (!e) {
				set_err(err, errlen, "SQL has an unterminated %s quote at byte %zu",
				        tag, i + 1);
				goto fail;
			}
			size_t j = (size_t)(e - sql) + tl;
			memcpy(o + w, sql + i, j - i);
			w += j - i;
			i = j;
		} else if (c == '?' && sql[i + 1] >= '1' && sql[i + 1] <= '9') {
			size_t j = i + 1;
			long n = 0;
			while (sql[j] >= '0' && sql[j] <= '9' && n <= 100000)
				n = n * 10 + (sql[j++] - '0');
			if (n > nparams) {
				set_err(err, errlen,
				        "SQL names parameter ?%ld at byte %zu but only %d %s given",
				        n, i + 1, nparams, nparams == 1 ? "was" : "were");
				goto fail;
			}
			if (ph == DS_PH_DOLLAR) {
				o[w++] = '$';
				memcpy(o + w, sql + i + 1, j - i - 1);
				w += j - i - 1;
			} else {
				o[w++] = '?';
				ord[k++] = (int)n - 1;
			}
			i = j;
		} else if (c == '?' && ph == DS_PH_QMARK) {
			set_err(err, errlen,
			        "SQL has a bare ? at byte %zu: number the parameters ?1..?n",
			        i + 1);
			goto fail;
		} else {
			o[w++] = sql[i++];
		}
	}
	o[w] = '\0';
	*out = o;
	if (k > 0) {
		*order = ord;
		*norder = k;
	} else {
		free(ord);
	}
	return 0;
fail:
	free(o);
	free(ord);
	return -1;
}

/* ---------------------------------------------------------------------------
 * Registry
 * ------------------------------------------------------------------------- */

static const struct ds_driver *driver_for(enum hr_ds_driver d)
{
	switch (d) {
	case HR_DS_MARIADB:
		return &ds_driver_mariadb;
	case HR_DS_POSTGRES:
	case HR_DS_REDSHIFT:
		return &ds_driver_pg;
	case HR_DS_ODBC:
		return &ds_driver_odbc;
	}
	return NULL;
}

int ds_registry_open(const struct config *cfg, struct ds_registry **out, char *err, size_t errlen)
{
	*out = NULL;
	struct ds_registry *r = calloc(1, sizeof *r);
	if (!r) {
		set_err(err, errlen, "out of memory");
		return -1;
	}
	struct hr_err e = {0};
	/* cfg is the config's json_t root (datasource.h). */
	json_t *root = (json_t *)(uintptr_t)cfg;
	if (hr_cfg_data_sources(root, &r->conf, &r->n, &e) != 0) {
		set_err(err, errlen, "%s", e.msg);
		free(r);
		return -1;
	}
	r->src = calloc(r->n + 1, sizeof *r->src);
	if (!r->src) {
		hr_ds_conf_free(r->conf, r->n);
		free(r);
		set_err(err, errlen, "out of memory");
		return -1;
	}
	for (size_t i = 0; i < r->n; i++) {
		struct ds_source *s = &r->src[i];
		s->conf = &r->conf[i];
		s->drv = driver_for(s->conf->driver);
		s->idle = calloc((size_t)s->conf->pool_size, sizeof *s->idle);
		pthread_condattr_t ca;
		int ok = s->idle != NULL && pthread_condattr_init(&ca) == 0;
		if (ok) {
			ok = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) == 0 &&
			     pthread_cond_init(&s->cv, &ca) == 0;
			pthread_condattr_destroy(&ca);
		}
		if (ok && pthread_mutex_init(&s->mu, NULL) != 0) {
			pthread_cond_destroy(&s->cv);
			ok = 0;
		}
		if (!ok) {
			char name[64];
			snprintf(name, sizeof name, "%s", s->conf->name);
			free(s->idle);
			r->n = i; /* the ones before are fully set up */
			ds_registry_close(r);
			set_err(err, errlen, "data source \"%s\": cannot set up its pool", name);
			return -1;
		}
	}
	*out = r;
	return 0;
}

void ds_registry_close(struct ds_registry *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->n; i++) {
		struct ds_source *s = &r->src[i];
		for (int k = 0; k < s->nidle; k++)
			s->drv->close(s->idle[k]);
		free(s->idle);
		pthread_mutex_destroy(&s->mu);
		pthread_cond_destroy(&s->cv);
	}
	free(r->src);
	/* r->n may have been cut short by a failed open; the conf array holds
	 * every entry hr_cfg_data_sources made. */
	size_t nconf = 0;
	while (r->conf && r->conf[nconf].name)
		nconf++;
	hr_ds_conf_free(r->conf, nconf);
	free(r);
}

static struct ds_source *find(const struct ds_registry *r, const char *name)
{
	if (!r || !name)
		return NULL;
	for (size_t i = 0; i < r->n; i++)
		if (!strcmp(r->src[i].conf->name, name))
			return &r->src[i];
	return NULL;
}

bool ds_tenant_allowed(const struct ds_registry *r, const char *source, const char *tenant_id)
{
	struct ds_source *s = find(r, source);
	if (!s || !tenant_id)
		return false;
	for (size_t i = 0; i < s->conf->ntenants; i++)
		if (!strcmp(s->conf->tenants[i], tenant_id))
			return true;
	return false;
}

const char *ds_named_query(const struct ds_registry *r, const char *source, const char *name)
{
	struct ds_source *s = find(r, source);
	if (!s || !name)
		return NULL;
	for (size_t i = 0; i < s->conf->nqueries; i++)
		if (!strcmp(s->conf->queries[i].name, name))
			return s->conf->queries[i].sql;
	return NULL;
}

size_t ds_registry_count(const struct ds_registry *r)
{
	return r ? r->n : 0;
}

int ds_pool_stats(struct ds_registry *r, const char *source, int *open, int *peak,
                  long long *opened)
{
	struct ds_source *s = find(r, source);
	if (!s)
		return -1;
	pthread_mutex_lock(&s->mu);
	if (open)
		*open = s->open;
	if (peak)
		*peak = s->peak;
	if (opened)
		*opened = s->opened;
	pthread_mutex_unlock(&s->mu);
	return 0;
}

/* ---------------------------------------------------------------------------
 * Pool
 * ------------------------------------------------------------------------- */

static void slot_gone(struct ds_source *s)
{
	pthread_mutex_lock(&s->mu);
	s->open--;
	pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

/* A connection for one statement by deadline_us: an idle one that is still
 * alive (*reused), else a new one while fewer than pool_size are open, else
 * the first one given back. No lock is held while connecting or checking. */
static int acquire(struct ds_source *s, int64_t deadline_us, void **conn, bool *reused, char *err,
                   size_t errlen)
{
	struct timespec until;
	until.tv_sec = (time_t)(deadline_us / 1000000);
	until.tv_nsec = (long)(deadline_us % 1000000) * 1000;
	pthread_mutex_lock(&s->mu);
	for (;;) {
		if (s->nidle > 0) {
			void *c = s->idle[--s->nidle];
			pthread_mutex_unlock(&s->mu);
			if (s->drv->alive(c)) {
				*conn = c;
				*reused = true;
				return 0;
			}
			s->drv->close(c); /* closed by the server while idle */
			pthread_mutex_lock(&s->mu);
			s->open--;
			continue;
		}
		if (s->open < s->conf->pool_size) {
			s->open++;
			if (s->open > s->peak)
				s->peak = s->open;
			pthread_mutex_unlock(&s->mu);
			char derr[512] = "";
			if (s->drv->connect(s->conf, deadline_us, conn, derr, sizeof derr) != 0) {
				slot_gone(s);
				set_err(err, errlen, "data source \"%s\": cannot connect: %s",
				        s->conf->name, derr);
				return -1;
			}
			pthread_mutex_lock(&s->mu);
			s->opened++;
			pthread_mutex_unlock(&s->mu);
			*reused = false;
			return 0;
		}
		int rc = pthread_cond_timedwait(&s->cv, &s->mu, &until);
		if (rc == ETIMEDOUT && s->nidle == 0 && s->open >= s->conf->pool_size) {
			pthread_mutex_unlock(&s->mu);
			set_err(err, errlen,
			        "data source \"%s\": all %d connections stayed in use until the "
			        "timeout",
			        s->conf->name, s->conf->pool_size);
			return -1;
		}
	}
}

static void release(struct ds_source *s, void *conn, bool broken)
{
	if (broken) {
		s->drv->close(conn);
		slot_gone(s);
		return;
	}
	pthread_mutex_lock(&s->mu);
	s->idle[s->nidle++] = conn;
	pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

/* ---------------------------------------------------------------------------
 * Statements
 * ------------------------------------------------------------------------- */

#define DS_MAX_PARAMS 1000

static int run(struct ds_registry *r, const char *source, const char *sql,
               const char *const *params, int nparams, int timeout_ms, ds_row_fn row, void *ctx,
               long long *affected, char *err, size_t errlen)
{
	if (err && errlen)
		err[0] = '\0';
	struct ds_source *s = find(r, source);
	if (!s) {
		set_err(err, errlen, "data source \"%.64s\": no such data source",
		        source ? source : "");
		return -1;
	}
	if (!sql || nparams < 0 || nparams > DS_MAX_PARAMS || (nparams > 0 && !params)) {
		set_err(err, errlen, "data source \"%s\": no SQL, or more than %d parameters",
		        s->conf->name, DS_MAX_PARAMS);
		return -1;
	}
	if (timeout_ms <= 0)
		timeout_ms = s->conf->timeout_ms;
	int64_t deadline = hr_mono_us() + (int64_t)timeout_ms * 1000;

	char *tsql = NULL;
	int *order = NULL, norder = 0;
	char terr[256];
	if (ds_sql_translate(sql, s->drv->placeholders, nparams, &tsql, &order, &norder, terr,
	                     sizeof terr) != 0) {
		set_err(err, errlen, "data source \"%s\": %s", s->conf->name, terr);
		return -1;
	}
	const char **bound = NULL;
	int nbound = nparams;
	if (s->drv->placeholders == DS_PH_QMARK) {
		nbound = norder;
		bound = calloc((size_t)norder + 1, sizeof *bound);
		if (!bound) {
			free(tsql);
			free(order);
			set_err(err, errlen, "data source \"%s\": out of memory", s->conf->name);
			return -1;
		}
		for (int k = 0; k < norder; k++)
			bound[k] = params[order[k]];
	}
	int rc = -1;
	for (int attempt = 0; attempt < 2; attempt++) {
		void *conn;
		bool reused = false;
		if (acquire(s, deadline, &conn, &reused, err, errlen) != 0)
			break;
		char derr[768] = "";
		struct ds_call call = {
		    .sql = tsql,
		    .params = bound ? bound : params,
		    .nparams = nbound,
		    .deadline_us = deadline,
		    .timeout_ms = timeout_ms,
		    .row = row,
		    .ctx = ctx,
		    .err = derr,
		    .errlen = sizeof derr,
		};
		rc = s->drv->run(conn, &call);
		release(s, conn, call.broken);
		if (rc == 0) {
			if (affected)
				*affected = call.affected;
			break;
		}
		set_err(err, errlen, "data source \"%s\": %s", s->conf->name, derr);
		/* One more try on a new connection when a pooled one turned out to
		 * be gone: for a query before any row, for a statement only when it
		 * cannot have run. */
		bool again = reused && call.broken && call.rows == 0 &&
		             (row != NULL || call.not_sent) && ds_ms_left(deadline) > 0;
		if (!again)
			break;
	}
	free(tsql);
	free(order);
	free(bound);
	return rc;
}

int ds_query(struct ds_registry *r, const char *source, const char *sql, const char *const *params,
             int nparams, int timeout_ms, ds_row_fn row, void *ctx, char *err, size_t errlen)
{
	if (!row) {
		set_err(err, errlen, "data source \"%.64s\": ds_query needs a row callback",
		        source ? source : "");
		return -1;
	}
	return run(r, source, sql, params, nparams, timeout_ms, row, ctx, NULL, err, errlen);
}

int ds_exec(struct ds_registry *r, const char *source, const char *sql, const char *const *params,
            int nparams, int timeout_ms, long long *affected, char *err, size_t errlen)
{
	long long a = 0;
	int rc = run(r, source, sql, params, nparams, timeout_ms, NULL, NULL, &a, err, errlen);
	if (rc == 0 && affected)
		*affected = a;
	return rc;
}
