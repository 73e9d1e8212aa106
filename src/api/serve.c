/*
 * serve.c - `herald serve` and `herald migrate`: load the config, open the
 * store, sync tenants/keys/accounts/templates from the config into it, start
 * the dispatcher, the applier and the HTTP server, and stop them in reverse
 * order on SIGINT/SIGTERM. The only place that wires subsystems together.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "api/api_int.h"
#include "campaigns/pricing.h"
#include "core/config.h"
#include "core/crypto.h"
#include "core/template.h"
#include "dispatch/reconciler.h"
#include "obs/metrics.h"
#include "plugins/datasource.h"
#include "plugins/plugins.h"

struct serve_args {
	const char *config;
	const char *listen;
	const char *db;
	const char *port_file;
	const char *sync;
};

static int parse_args(int argc, char **argv, struct serve_args *a, const char *cmd)
{
	static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
	                                     {"listen", required_argument, NULL, 'l'},
	                                     {"db", required_argument, NULL, 'd'},
	                                     {"port-file", required_argument, NULL, 'p'},
	                                     {"synchronous", required_argument, NULL, 's'},
	                                     {"verbose", no_argument, NULL, 'v'},
	                                     {"help", no_argument, NULL, 'h'},
	                                     {NULL, 0, NULL, 0}};
	memset(a, 0, sizeof *a);
	a->config = getenv("HERALD_CONFIG");
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "c:l:d:p:s:vh", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			a->config = optarg;
			break;
		case 'l':
			a->listen = optarg;
			break;
		case 'd':
			a->db = optarg;
			break;
		case 'p':
			a->port_file = optarg;
			break;
		case 's':
			a->sync = optarg;
			break;
		case 'v':
			hr_log_set_level(HR_LOG_DEBUG);
			break;
		case 'h':
			printf(
			    "usage: herald %s --config FILE [--listen HOST:PORT] [--db PATH]\n"
			    "       [--synchronous normal|full] [--port-file PATH] [--verbose]\n\n"
			    "  --config     YAML config (default $HERALD_CONFIG)\n"
			    "  --listen     override server.listen (port 0 picks a free port)\n"
			    "  --db         override store.path (store.url for postgres)\n"
			    "  --port-file  write the bound port here once listening\n%s",
			    cmd,
			    strcmp(cmd, "migrate") == 0
			        ? "\nusage: herald migrate --from sqlite:PATH --to postgres:URL\n"
			          "       [--password-env NAME | --password-file PATH] [--force]\n"
			          "  copies a SQLite installation into PostgreSQL, verified\n"
			        : "");
			return 1;
		default:
			return 2;
		}
	}
	if (!a->config) {
		fprintf(stderr, "herald %s: --config FILE is required (or set HERALD_CONFIG)\n",
		        cmd);
		return 2;
	}
	return 0;
}

/* Splits "host:port"; HR_EINVAL naming field if malformed. */
static int split_listen(const char *s, char *host, size_t hostlen, int *port, const char *field,
                        struct hr_err *err)
{
	const char *colon = strrchr(s, ':');
	if (!colon || colon == s || (size_t)(colon - s) >= hostlen)
		return hr_fail(err, HR_EINVAL, field, "%s must be HOST:PORT, got \"%s\"", field, s);
	memcpy(host, s, (size_t)(colon - s));
	host[colon - s] = '\0';
	char *end;
	long p = strtol(colon + 1, &end, 10);
	if (*end || p < 0 || p > 65535)
		return hr_fail(err, HR_EINVAL, field, "%s has a bad port \"%s\"", field, colon + 1);
	*port = (int)p;
	return 0;
}

static int open_store(json_t *cfg, const struct serve_args *a, struct store **st,
                      struct hr_err *err)
{
	const char *driver = hr_cfg_str(cfg, "store.driver", "sqlite", err);
	const char *path = a->db ? a->db : hr_cfg_str(cfg, "store.path", "herald.db", err);
	const char *sync = a->sync ? a->sync : hr_cfg_str(cfg, "store.synchronous", "normal", err);
	if (err->code)
		return err->code;
	const struct store_ops *ops = store_backend(driver);
	if (!ops)
		return hr_fail(err, HR_EINVAL, "store.driver", "unknown store driver \"%s\"",
		               driver);
	struct store_opts so = {0};
	if (!strcmp(sync, "full"))
		so.sync_full = true;
	else if (strcmp(sync, "normal") != 0)
		return hr_fail(err, HR_EINVAL, "store.synchronous",
		               "store.synchronous must be normal or full, got \"%s\"", sync);
	so.group_max = (int)hr_cfg_int(cfg, "store.group_max", 512, 1, 100000, err);
	so.queue_max = (int)hr_cfg_int(cfg, "store.queue_max", 65536, 1, 10000000, err);
	if (err->code)
		return err->code;
	if (strcmp(ops->name, "postgres") != 0)
		return ops->open(path, &so, st, err);
	/* PostgreSQL: store.url is a libpq conninfo or URI (no password in it,
	 * ideally); store.password an env:/file: reference resolved here, held
	 * only for the open and by the store for reconnecting. */
	const char *url = a->db ? a->db : hr_cfg_str(cfg, "store.url", NULL, err);
	const char *pref = hr_cfg_str(cfg, "store.password", NULL, err);
	if (err->code)
		return err->code;
	if (!url || !*url)
		return hr_fail(err, HR_EINVAL, "store.url",
		               "store.driver postgres needs store.url (a libpq conninfo or URI)");
	char *pw = NULL;
	if (pref && !(pw = hr_secret_resolve(pref, "store.password", err)))
		return err->code ? err->code : HR_EINVAL;
	so.password = pw;
	int rc = ops->open(url, &so, st, err);
	if (pw)
		hr_secret_free(pw);
	return rc;
}

/*
 * What a template declares beyond its body, as template_row.config JSON
 * (store.h): `header: {type: text|image|document, params: N}` (a text
 * header has 0 or 1 parameter, WhatsApp's limit; a media header always
 * takes its link, whatever params says), `buttons: [{type:
 * quick_reply|url, params: 0|1}]` (a quick reply's payload, a URL button's
 * suffix), `regulatory: {...}` (provider fields carried with every send)
 * and `delivery_policy: at_least_once | at_most_once` (what its messages do
 * when a send's outcome is unknown, unless a message says otherwise).
 * *out is NULL when the template declares none of them; errors name the key
 * under f ("tenants[0].templates[2]").
 */
int serve_template_config(json_t *tp, const char *f, char **out, struct hr_err *err)
{
	*out = NULL;
	json_t *header = json_object_get(tp, "header"), *buttons = json_object_get(tp, "buttons");
	json_t *reg = json_object_get(tp, "regulatory");
	json_t *dp = json_object_get(tp, "delivery_policy");
	json_t *route = json_object_get(tp, "route"), *after = json_object_get(tp, "fallback_after_s");
	json_t *ftext = json_object_get(tp, "fallback_text");
	json_t *cat = json_object_get(tp, "category"); /* WhatsApp's, for cost estimates */
	if (!header && !buttons && !reg && !dp && !route && !after && !ftext && !cat)
		return 0;
	json_t *cfg = json_object();
	if (!cfg)
		return hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	char k[224];
	int rc = 0;
	if (header) {
		snprintf(k, sizeof k, "%s.header", f);
		const char *type =
		    json_is_object(header) ? hr_cfg_str(header, "type", NULL, err) : NULL;
		bool text = type && !strcmp(type, "text");
		if (!type || (!text && strcmp(type, "image") && strcmp(type, "document")))
			rc = hr_fail(err, HR_EINVAL, k, "%s needs type text, image or document", k);
		json_int_t n = 0;
		if (rc == 0) {
			snprintf(k, sizeof k, "%s.header.params", f);
			n = (json_int_t)hr_cfg_int(header, "params", 0, 0, 1, err);
			if (err->code)
				rc = hr_fail(err, HR_EINVAL, k, "%s must be 0 or 1", k);
		}
		if (rc == 0 &&
		    json_object_set_new(cfg, "header",
		                        json_pack("{s:s, s:I}", "type", type, "params", n)))
			rc = hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	}
	if (rc == 0 && buttons) {
		snprintf(k, sizeof k, "%s.buttons", f);
		json_t *list = json_array();
		if (!json_is_array(buttons) || json_array_size(buttons) > 10)
			rc = hr_fail(err, HR_EINVAL, k, "%s must be a list of at most 10 buttons",
			             k);
		size_t i;
		json_t *b;
		json_array_foreach(buttons, i, b)
		{
			if (rc)
				break;
			snprintf(k, sizeof k, "%s.buttons[%zu]", f, i);
			const char *type =
			    json_is_object(b) ? hr_cfg_str(b, "type", NULL, err) : NULL;
			if (!type || (strcmp(type, "quick_reply") && strcmp(type, "url"))) {
				rc = hr_fail(err, HR_EINVAL, k, "%s needs type quick_reply or url",
				             k);
				break;
			}
			json_int_t n = (json_int_t)hr_cfg_int(b, "params", 0, 0, 1, err);
			if (err->code) {
				snprintf(k, sizeof k, "%s.buttons[%zu].params", f, i);
				rc = hr_fail(err, HR_EINVAL, k, "%s must be 0 or 1", k);
				break;
			}
			if (!list || json_array_append_new(
			                 list, json_pack("{s:s, s:I}", "type", type, "params", n)))
				rc = hr_fail(err, HR_ENOMEM, NULL, "out of memory");
		}
		if (rc == 0 && json_object_set(cfg, "buttons", list))
			rc = hr_fail(err, HR_ENOMEM, NULL, "out of memory");
		json_decref(list);
	}
	if (rc == 0 && reg) {
		snprintf(k, sizeof k, "%s.regulatory", f);
		if (!json_is_object(reg))
			rc = hr_fail(err, HR_EINVAL, k, "%s must be a mapping of provider fields",
			             k);
		else if (json_object_set(cfg, "regulatory", reg))
			rc = hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	}
	if (rc == 0 && dp) {
		enum delivery_policy p;
		snprintf(k, sizeof k, "%s.delivery_policy", f);
		if (delivery_policy_parse(json_string_value(dp), &p) != 0)
			rc = hr_fail(err, HR_EINVAL, k,
			             "%s must be \"at_least_once\" or \"at_most_once\"", k);
		else if (json_object_set_new(cfg, "delivery_policy",
		                             json_string(delivery_policy_name(p))))
			rc = hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	}
	/* The fallback route of the template's messages (the same fields as a
	 * message's; its steps' accounts are checked when a message uses it,
	 * against the sending tenant's accounts then). */
	if (rc == 0 && (route || after || ftext)) {
		snprintf(k, sizeof k, "%s.route", f);
		if (!json_is_array(route) || json_array_size(route) < 2 || json_array_size(route) > 4)
			rc = hr_fail(err, HR_EINVAL, k,
			             "%s must list 2 to 4 steps, such as [whatsapp, sms]", k);
		snprintf(k, sizeof k, "%s.fallback_after_s", f);
		if (rc == 0 && after && !json_is_integer(after))
			rc = hr_fail(err, HR_EINVAL, k, "%s must be a whole number of seconds", k);
		snprintf(k, sizeof k, "%s.fallback_text", f);
		if (rc == 0 && ftext && !json_is_string(ftext))
			rc = hr_fail(err, HR_EINVAL, k, "%s must be text", k);
		json_t *fb = rc == 0 ? json_pack("{s:O}", "route", route) : NULL;
		bool oom = rc == 0 && (!fb || (after && json_object_set(fb, "fallback_after_s", after)) ||
		                       (ftext && json_object_set(fb, "fallback_text", ftext)));
		if (oom)
			json_decref(fb);
		else if (rc == 0)
			oom = json_object_set_new(cfg, "fallback", fb) != 0; /* takes fb either way */
		if (oom)
			rc = hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	}
	/* The template's WhatsApp category (what Meta prices it as): the
	 * campaign cost estimate uses it (campaigns/pricing.h). */
	if (rc == 0 && cat) {
		enum wa_category c;
		snprintf(k, sizeof k, "%s.category", f);
		if (wa_category_parse(json_string_value(cat), &c) != 0)
			rc = hr_fail(err, HR_EINVAL, k,
			             "%s must be marketing, utility, authentication or service", k);
		else if (json_object_set_new(cfg, "category", json_string(wa_category_name(c))))
			rc = hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	}
	if (rc == 0 && !(*out = json_dumps(cfg, JSON_COMPACT)))
		rc = hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	json_decref(cfg);
	return rc;
}

/* Copies tenants, API keys (hashed), accounts and templates from the config
 * into the store, so the config file is the source of truth at start. */
int serve_sync_config(json_t *cfg, struct store *st, struct hr_err *err)
{
	json_t *tenants = hr_cfg_get(cfg, "tenants");
	if (tenants && !json_is_array(tenants))
		return hr_fail(err, HR_EINVAL, "tenants", "tenants must be a list");
	size_t ti;
	json_t *t;
	char f[160];
	json_array_foreach(tenants, ti, t)
	{
		struct tenant_row tr = {0};
		snprintf(f, sizeof f, "tenants[%zu].id", ti);
		const char *id = hr_cfg_str(t, "id", NULL, err);
		if (!id || !*id || strlen(id) >= sizeof tr.id)
			return hr_fail(err, HR_EINVAL, f, "%s is required (1..63 chars)", f);
		hr_strlcpy(tr.id, id, sizeof tr.id);
		hr_strlcpy(tr.name, hr_cfg_str(t, "name", id, err), sizeof tr.name);
		/* Checked with the secret by callback_tenants_load before. */
		tr.callback_url = hr_cfg_str(t, "callback_url", NULL, err);
		if (err->code)
			return err->code;
		int rc = st->ops->tenant_upsert(st, &tr, err);
		if (rc)
			return rc;

		json_t *keys = json_object_get(t, "api_keys");
		size_t ki;
		json_t *k;
		/* Keys removed from the config are revoked: the config is the
		 * source of truth for the keys of the tenants it defines. */
		size_t nkeys = json_array_size(keys);
		char(*hashes)[65] = calloc(nkeys ? nkeys : 1, sizeof *hashes);
		const char **keep = calloc(nkeys ? nkeys : 1, sizeof *keep);
		if (!hashes || !keep) {
			free(hashes);
			free(keep);
			return hr_fail(err, HR_ENOMEM, NULL, "out of memory");
		}
		/* Units first: keys may be restricted to one. Seeding never
		 * re-enables a unit disabled through the API. */
		json_t *units = json_object_get(t, "units");
		size_t ui;
		json_t *un;
		json_array_foreach(units, ui, un)
		{
			struct unit_row u = {0};
			snprintf(f, sizeof f, "tenants[%zu].units[%zu].id", ti, ui);
			const char *uid = json_is_string(un) ? json_string_value(un)
			                                     : hr_cfg_str(un, "id", NULL, err);
			if (!uid || !*uid || strlen(uid) >= sizeof u.id ||
			    strspn(uid, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") !=
			        strlen(uid)) {
				rc = hr_fail(err, HR_EINVAL, f,
				             "%s is required: 1..63 letters, digits, '_' or '-'", f);
				break;
			}
			hr_strlcpy(u.tenant_id, tr.id, sizeof u.tenant_id);
			hr_strlcpy(u.id, uid, sizeof u.id);
			hr_strlcpy(u.name, json_is_object(un) ? hr_cfg_str(un, "name", uid, err) : uid,
			           sizeof u.name);
			if ((rc = st->ops->unit_create(st, &u, true, NULL, err)) != 0)
				break;
		}
		json_array_foreach(keys, ki, k)
		{
			if (rc)
				break;
			snprintf(f, sizeof f, "tenants[%zu].api_keys[%zu]", ti, ki);
			/* A reference, or {key, scopes, unit, label}: without scopes a
			 * config key has them all (as before scopes existed). */
			const char *ref = json_is_object(k) ? json_string_value(json_object_get(k, "key"))
			                                    : json_string_value(k);
			struct key_row kr = {0};
			hr_strlcpy(kr.tenant_id, tr.id, sizeof kr.tenant_id);
			hr_strlcpy(kr.scopes, "*", sizeof kr.scopes);
			hr_strlcpy(kr.created_by, "config", sizeof kr.created_by);
			hr_strlcpy(kr.label, f, sizeof kr.label);
			if (json_is_object(k)) {
				char sf[200];
				snprintf(sf, sizeof sf, "%s.scopes", f);
				json_t *sc = json_object_get(k, "scopes");
				char text[512] = "";
				size_t si;
				json_t *sv;
				json_array_foreach(sc, si, sv)
				{
					const char *nm = json_string_value(sv);
					if (!nm || strlen(text) + strlen(nm) + 2 > sizeof text) {
						rc = hr_fail(err, HR_EINVAL, sf, "%s must list scope names", sf);
						break;
					}
					if (text[0])
						strcat(text, " ");
					strcat(text, nm);
				}
				unsigned bits = 0;
				if (!rc && sc && api_scopes_parse(text, &bits, err, sf) != 0)
					rc = err->code;
				if (!rc && sc)
					api_scopes_text(bits, kr.scopes, sizeof kr.scopes);
				const char *unit = hr_cfg_str(k, "unit", NULL, err);
				if (unit)
					hr_strlcpy(kr.unit_id, unit, sizeof kr.unit_id);
				const char *label = hr_cfg_str(k, "label", NULL, err);
				if (label)
					hr_strlcpy(kr.label, label, sizeof kr.label);
				if (!rc && err->code)
					rc = err->code;
				if (rc)
					break;
			}
			char *key = hr_secret_resolve(ref, f, err);
			if (!key || strlen(key) < 16) {
				if (key)
					hr_fail(err, HR_EINVAL, f,
					        "%s is too short (16 chars at least)", f);
				else if (!err->code)
					hr_fail(err, HR_EINVAL, f, "%s: the key is required", f);
				hr_secret_free(key);
				rc = err->code;
				break;
			}
			hr_sha256_hex(key, strlen(key), hashes[ki]);
			keep[ki] = hashes[ki];
			hr_secret_free(key);
			memcpy(kr.hash, hashes[ki], 65);
			if (kr.unit_id[0]) {
				struct unit_row ur;
				if (st->ops->unit_get(st, tr.id, kr.unit_id, &ur) != 0) {
					rc = hr_fail(err, HR_EINVAL, f, "%s.unit: no such unit in tenants[%zu].units",
					             f, ti);
					break;
				}
			}
			rc = st->ops->key_seed(st, &kr, err);
			if (rc)
				break;
		}
		if (rc == 0)
			rc = st->ops->api_key_prune(st, tr.id, keep, nkeys, err);
		free(hashes);
		free(keep);
		if (rc)
			return rc;

		json_t *accts = json_object_get(t, "accounts");
		size_t ai;
		json_t *ac;
		json_array_foreach(accts, ai, ac)
		{
			struct account_row ar = {0};
			snprintf(f, sizeof f, "tenants[%zu].accounts[%zu]", ti, ai);
			const char *aid = hr_cfg_str(ac, "id", NULL, err);
			const char *ch = hr_cfg_str(ac, "channel", NULL, err);
			if (!aid || !*aid || strlen(aid) >= sizeof ar.id || strchr(aid, '~'))
				return hr_fail(err, HR_EINVAL, f,
				               "%s.id is required (1..63 chars, no '~': ids with '~' "
				               "are those tenants create)",
				               f);
			if (!ch || !channel_find(ch))
				return hr_fail(err, HR_EINVAL, f,
				               "%s.channel must be a known channel", f);
			hr_strlcpy(ar.id, aid, sizeof ar.id);
			hr_strlcpy(ar.tenant_id, tr.id, sizeof ar.tenant_id);
			hr_strlcpy(ar.channel, ch, sizeof ar.channel);
			ar.config = json_dumps(ac, JSON_COMPACT);
			rc = st->ops->account_upsert(st, &ar, err);
			free(ar.config);
			if (rc)
				return rc;
		}

		json_t *tpls = json_object_get(t, "templates");
		size_t pi;
		json_t *tp;
		json_array_foreach(tpls, pi, tp)
		{
			struct template_row row = {0};
			snprintf(f, sizeof f, "tenants[%zu].templates[%zu]", ti, pi);
			const char *name = hr_cfg_str(tp, "name", NULL, err);
			const char *ch = hr_cfg_str(tp, "channel", NULL, err);
			const char *lang = hr_cfg_str(tp, "language", NULL, err);
			const char *body = hr_cfg_str(tp, "body", NULL, err);
			if (!name || !ch || !lang || !body)
				return hr_fail(err, HR_EINVAL, f,
				               "%s needs name, channel, language and body", f);
			hr_strlcpy(row.tenant_id, tr.id, sizeof row.tenant_id);
			hr_strlcpy(row.channel, ch, sizeof row.channel);
			hr_strlcpy(row.name, name, sizeof row.name);
			hr_strlcpy(row.language, lang, sizeof row.language);
			if (template_param_count(body, &row.param_count, err) != 0) {
				snprintf(f, sizeof f, "tenants[%zu].templates[%zu].body", ti, pi);
				hr_strlcpy(err->field, f, sizeof err->field);
				return err->code;
			}
			if ((rc = serve_template_config(tp, f, &row.config, err)))
				return rc;
			row.body = (char *)body;
			rc = st->ops->template_upsert(st, &row, err);
			free(row.config);
			if (rc)
				return rc;
		}
	}
	return 0;
}

static int read_dispatch_opts(json_t *cfg, struct dispatch_opts *o, struct hr_err *err)
{
	dispatch_opts_default(o);
	o->max_in_flight =
	    (int)hr_cfg_int(cfg, "dispatch.max_in_flight", o->max_in_flight, 1, 100000, err);
	o->threads =
	    (int)hr_cfg_int(cfg, "dispatch.threads", o->threads, 1, DISPATCH_THREADS_MAX, err);
	if (!err->code && o->threads > o->max_in_flight)
		return hr_fail(
		    err, HR_EINVAL, "dispatch.threads",
		    "dispatch.threads (%d) cannot exceed dispatch.max_in_flight (%d): each "
		    "thread needs a send slot",
		    o->threads, o->max_in_flight);
	o->lease_us = hr_cfg_int(cfg, "dispatch.lease_seconds", 30, 1, 86400, err) * 1000000;
	o->max_attempts =
	    (int)hr_cfg_int(cfg, "dispatch.max_attempts", o->max_attempts, 1, 100, err);
	o->backoff_base_us =
	    hr_cfg_int(cfg, "dispatch.backoff_base_ms", 500, 1, 3600000, err) * 1000;
	o->backoff_max_us =
	    hr_cfg_int(cfg, "dispatch.backoff_max_ms", 300000, 1, 86400000, err) * 1000;
	o->http_timeout_us =
	    hr_cfg_int(cfg, "dispatch.http_timeout_ms", 15000, 100, 600000, err) * 1000;
	const char *ca = hr_cfg_str(cfg, "dispatch.ca_file", NULL, err);
	if (!err->code && http_set_ca_file(ca, err))
		return err->code;
	o->reconcile_every_us =
	    hr_cfg_int(cfg, "dispatch.reconcile_ms", 1000, 10, 3600000, err) * 1000;
	/* Absent: 0, the dispatcher's default (a fraction of max_in_flight). */
	o->max_in_flight_per_account =
	    (int)hr_cfg_int(cfg, "dispatch.max_in_flight_per_account", 0, 1, 100000, err);
	o->max_in_flight_per_tenant =
	    (int)hr_cfg_int(cfg, "dispatch.max_in_flight_per_tenant", 0, 1, 100000, err);
	const char *over =
	    o->max_in_flight_per_account > o->max_in_flight  ? "dispatch.max_in_flight_per_account"
	    : o->max_in_flight_per_tenant > o->max_in_flight ? "dispatch.max_in_flight_per_tenant"
	                                                     : NULL;
	if (!err->code && over)
		return hr_fail(err, HR_EINVAL, over,
		               "%s cannot exceed dispatch.max_in_flight (%d): it is a share of "
		               "those slots",
		               over, o->max_in_flight);
	if (!err->code && o->lease_us <= o->http_timeout_us + 1000000)
		return hr_fail(
		    err, HR_EINVAL, "dispatch.lease_seconds",
		    "dispatch.lease_seconds (%lld s) must exceed dispatch.http_timeout_ms "
		    "(%lld ms) by more than a second: a lease that ends while its send "
		    "is still in flight lets a second process send the message again",
		    (long long)(o->lease_us / 1000000), (long long)(o->http_timeout_us / 1000));
	return err->code;
}

/* reconcile.*: the reconciler's schedule and thresholds (reconciler.h). The
 * interval defaults to dispatch.reconcile_ms, which set it before the
 * reconciler had a thread of its own. */
static int read_reconcile_opts(json_t *cfg, const struct dispatch_opts *d,
                               struct reconcile_opts *o, struct hr_err *err)
{
	reconcile_opts_default(o);
	o->interval_us = hr_cfg_int(cfg, "reconcile.interval_ms", d->reconcile_every_us / 1000, 10,
	                            3600000, err) *
	                 1000;
	o->batch = (int)hr_cfg_int(cfg, "reconcile.batch", o->batch, 1, 1000, err);
	o->inbox_park_after_us = hr_cfg_int(cfg, "reconcile.inbox_park_after_s",
	                                    o->inbox_park_after_us / 1000000, 1, 7 * 86400, err) *
	                         1000000;
	o->lookup_timeout_us = hr_cfg_int(cfg, "reconcile.lookup_timeout_ms",
	                                  o->lookup_timeout_us / 1000, 100, 60000, err) *
	                       1000;
	o->lookup_budget_us = hr_cfg_int(cfg, "reconcile.lookup_budget_ms",
	                                 o->lookup_budget_us / 1000, 100, 600000, err) *
	                      1000;
	json_t *st = hr_cfg_get(cfg, "reconcile.stale_after_s");
	if (st && !json_is_object(st))
		return hr_fail(err, HR_EINVAL, "reconcile.stale_after_s",
		               "reconcile.stale_after_s must map channel names to seconds");
	const char *ch;
	json_t *v;
	json_object_foreach(st, ch, v)
	{
		if (!json_is_integer(v) || json_integer_value(v) < 0 ||
		    json_integer_value(v) > 30 * 86400)
			return hr_fail(err, HR_EINVAL, "reconcile.stale_after_s",
			               "reconcile.stale_after_s.%s must be 0 to 2592000 seconds", ch);
		if (reconcile_opts_stale(o, ch, json_integer_value(v) * 1000000))
			return hr_fail(err, HR_EINVAL, "reconcile.stale_after_s",
			               "reconcile.stale_after_s names too many channels (at most %d)",
			               RECONCILE_CHANNELS_MAX);
	}
	return err->code;
}

/* callbacks.*: the sender's limits and schedule (callbacks.h). */
static int read_callback_opts(json_t *cfg, struct callback_opts *o, struct hr_err *err)
{
	callback_opts_default(o);
	o->max_in_flight =
	    (int)hr_cfg_int(cfg, "callbacks.max_in_flight", o->max_in_flight, 1, 10000, err);
	o->max_in_flight_per_url = (int)hr_cfg_int(cfg, "callbacks.max_in_flight_per_url",
	                                           o->max_in_flight_per_url, 1, 10000, err);
	o->timeout_us =
	    hr_cfg_int(cfg, "callbacks.timeout_ms", o->timeout_us / 1000, 100, 600000, err) * 1000;
	o->max_attempts =
	    (int)hr_cfg_int(cfg, "callbacks.max_attempts", o->max_attempts, 1, 1000, err);
	o->backoff_base_us = hr_cfg_int(cfg, "callbacks.backoff_base_ms", o->backoff_base_us / 1000,
	                                1, 3600000, err) *
	                     1000;
	o->backoff_max_us = hr_cfg_int(cfg, "callbacks.backoff_max_ms", o->backoff_max_us / 1000, 1,
	                               7 * 86400000LL, err) *
	                    1000;
	o->poll_us = hr_cfg_int(cfg, "callbacks.poll_ms", o->poll_us / 1000, 10, 60000, err) * 1000;
	if (!err->code && o->max_in_flight_per_url > o->max_in_flight)
		return hr_fail(err, HR_EINVAL, "callbacks.max_in_flight_per_url",
		               "callbacks.max_in_flight_per_url cannot exceed callbacks.max_in_flight");
	if (!err->code && o->backoff_max_us < o->backoff_base_us)
		return hr_fail(err, HR_EINVAL, "callbacks.backoff_max_ms",
		               "callbacks.backoff_max_ms cannot be below callbacks.backoff_base_ms");
	return err->code;
}

int serve_retention_opts(json_t *cfg, struct retention_opts *o, struct hr_err *err)
{
	o->inbox_keep_us =
	    hr_cfg_int(cfg, "store.inbox_retention_hours", 72, 1, 24 * 3650, err) * 3600000000LL;
	o->idem_keep_us =
	    hr_cfg_int(cfg, "store.idempotency_ttl_hours", 24, 1, 24 * 3650, err) * 3600000000LL;
	o->message_keep_us =
	    hr_cfg_int(cfg, "store.message_retention_days", 0, 0, 3650, err) * 86400000000LL;
	o->callback_keep_us =
	    hr_cfg_int(cfg, "callbacks.retention_hours", 72, 1, 24 * 3650, err) * 3600000000LL;
	return err->code;
}

/* Transactions of message retention per tick (of 1,000 messages each): a
 * backlog (retention just turned on) drains over several minutes rather
 * than in one long pass. */
#define RETENTION_BATCHES_PER_TICK 100
#define RETENTION_CHANNELS_MAX 16 /* store.h: struct msg_retention */

/*
 * One retention tick: finished webhook rows and idempotency records expire,
 * then (if store.message_retention_days is set) settled messages older than
 * that with their events, all in short transactions, so the database does
 * not grow without bound. Failures are logged and retried next tick.
 */
void serve_retention_tick(struct store *st, const struct retention_opts *ro)
{
	int64_t now = hr_now_us(), n = 0, total = 0;
	for (int i = 0; i < 100; i++) {
		if (st->ops->prune(st, now - ro->inbox_keep_us, now - ro->idem_keep_us, 5000, &n) ||
		    n == 0)
			break;
		total += n;
	}
	/* Delivered callbacks (pending and dead ones stay). */
	for (int i = 0; ro->callback_keep_us && i < 100; i++) {
		if (st->ops->callback_prune(st, now - ro->callback_keep_us, 5000, &n) || n == 0)
			break;
		total += n;
	}
	if (total)
		hr_log(HR_LOG_INFO, "serve", "retention: %lld expired rows deleted",
		       (long long)total);
	if (!ro->message_keep_us)
		return;
	const char *at_sent[RETENTION_CHANNELS_MAX];
	struct msg_retention mr = {.before = now - ro->message_keep_us,
	                           .final_at_sent = at_sent,
	                           .nfinal_at_sent =
	                               channel_final_at_sent(at_sent, RETENTION_CHANNELS_MAX),
	                           .max_batches = RETENTION_BATCHES_PER_TICK};
	struct msg_retention_stats rs;
	struct hr_err err = {0};
	if (st->ops->message_prune(st, &mr, &rs, &err)) {
		hr_log(HR_LOG_WARN, "serve", "message retention: %s", err.msg);
		return;
	}
	metrics_retention(rs.messages, rs.events, rs.months);
	char months[48] = "";
	if (rs.months)
		snprintf(months, sizeof months, " (%d months dropped whole)", rs.months);
	if (rs.messages || rs.events || rs.months)
		hr_log(HR_LOG_INFO, "serve",
		       "message retention: %lld messages and %lld events removed%s%s",
		       (long long)rs.messages, (long long)rs.events, months,
		       rs.more ? ", more next time" : "");
}

static int read_api_opts(json_t *cfg, const struct serve_args *a, struct api_opts *o, char *host,
                         size_t hostlen, char *mhost, size_t mhostlen, struct hr_err *err)
{
	api_opts_default(o);
	const char *listen =
	    a->listen ? a->listen : hr_cfg_str(cfg, "server.listen", "127.0.0.1:8080", err);
	if (err->code)
		return err->code;
	if (split_listen(listen, host, hostlen, &o->port, a->listen ? "--listen" : "server.listen",
	                 err))
		return err->code;
	o->listen_addr = host;
	o->public_url = hr_cfg_str(cfg, "server.public_url", NULL, err);
	o->threads = (int)hr_cfg_int(cfg, "server.threads", o->threads, 1, 64, err);
	o->max_connections =
	    (int)hr_cfg_int(cfg, "server.max_connections", o->max_connections, 1, 100000, err);
	o->max_body_bytes = (size_t)hr_cfg_int(cfg, "server.max_body_bytes",
	                                       (int64_t)o->max_body_bytes, 1024, 1 << 30, err);
	o->max_webhook_bytes = (size_t)hr_cfg_int(
	    cfg, "server.max_webhook_bytes", (int64_t)o->max_webhook_bytes, 1024, 1 << 30, err);
	o->max_header_bytes = (size_t)hr_cfg_int(cfg, "server.max_header_bytes",
	                                         (int64_t)o->max_header_bytes, 1024, 1 << 20, err);
	o->max_url_bytes = (size_t)hr_cfg_int(cfg, "server.max_url_bytes",
	                                      (int64_t)o->max_url_bytes, 256, 1 << 20, err);
	o->max_header_fields =
	    (int)hr_cfg_int(cfg, "server.max_header_fields", o->max_header_fields, 16, 10000, err);
	/* Absent: -1, an eighth of max_connections (api_start). */
	o->max_connections_per_ip = (int)hr_cfg_int(cfg, "server.max_connections_per_ip",
	                                            o->max_connections_per_ip, 0, 100000, err);
	o->request_head_timeout_us =
	    hr_cfg_int(cfg, "server.request_head_timeout_ms", o->request_head_timeout_us / 1000,
	               100, 600000, err) *
	    1000;
	o->request_body_timeout_us =
	    hr_cfg_int(cfg, "server.request_body_timeout_ms", o->request_body_timeout_us / 1000,
	               100, 600000, err) *
	    1000;
	o->min_body_rate = (int)hr_cfg_int(cfg, "server.min_body_rate_bytes_per_s",
	                                   o->min_body_rate, 1, 1 << 30, err);
	o->max_batch = (int)hr_cfg_int(cfg, "server.max_batch", o->max_batch, 1, 100000, err);
	o->max_batch_rows =
	    (int)hr_cfg_int(cfg, "batches.max_rows", o->max_batch_rows, 1, 10000000, err);
	o->make_ahead = hr_cfg_int(cfg, "batches.make_ahead", o->make_ahead, 0, 100000000, err);
	o->max_upload_bytes = (size_t)hr_cfg_int(cfg, "batches.max_upload_bytes",
	                                         (int64_t)o->max_upload_bytes, 1024,
	                                         (int64_t)4 << 30, err);
	o->upload_dir = hr_cfg_str(cfg, "batches.upload_dir", NULL, err);
	o->sync_timeout_us =
	    hr_cfg_int(cfg, "server.sync_timeout_ms", o->sync_timeout_us / 1000, 1, 600000, err) *
	    1000;
	o->auth_cache_us = hr_cfg_int(cfg, "server.auth_cache_ms", 5000, 0, 60000, err) * 1000;
	if (o->auth_cache_us == 0)
		o->auth_cache_us = 1; /* 0: every request reads the store */
	o->auth_cfg = cfg; /* auth.jwt and tenants[].jwt */
	/* Request rates (README "Limits"): 0 or absent = none. Rates may be
	 * fractional (0.5 = one request every two seconds). */
	o->limits.rate_milli =
	    (int64_t)(hr_cfg_num(cfg, "limits.requests_per_s", 0, 0, 1e6, err) * 1000 + 0.5);
	o->limits.burst = hr_cfg_int(cfg, "limits.burst", 0, 0, 1000000, err);
	o->limits.key_rate_milli =
	    (int64_t)(hr_cfg_num(cfg, "limits.key_requests_per_s", 0, 0, 1e6, err) * 1000 + 0.5);
	o->limits.key_burst = hr_cfg_int(cfg, "limits.key_burst", 0, 0, 1000000, err);
	o->limits.max_buckets = (size_t)hr_cfg_int(cfg, "limits.max_buckets",
	                                           API_LIMIT_BUCKETS_DEFAULT, 64, 10000000, err);
	/* The dashboard's sessions and event streams (README "Dashboard"). */
	o->dash.max_sessions =
	    (int)hr_cfg_int(cfg, "dashboard.max_sessions", o->dash.max_sessions, 1, 1000000, err);
	o->dash.sessions_per_key = (int)hr_cfg_int(cfg, "dashboard.sessions_per_key",
	                                           o->dash.sessions_per_key, 1, 1000, err);
	o->dash.session_idle_us = hr_cfg_int(cfg, "dashboard.session_idle_s",
	                                     o->dash.session_idle_us / 1000000, 1, 86400, err) *
	                          1000000;
	o->dash.session_max_age_us =
	    hr_cfg_int(cfg, "dashboard.session_max_age_s", o->dash.session_max_age_us / 1000000, 1,
	               30 * 86400, err) *
	    1000000;
	o->dash.unmask_us =
	    hr_cfg_int(cfg, "dashboard.unmask_s", o->dash.unmask_us / 1000000, 1, 86400, err) *
	    1000000;
	o->dash.max_event_streams = (int)hr_cfg_int(cfg, "dashboard.max_event_streams",
	                                            o->dash.max_event_streams, 1, 100000, err);
	o->dash.streams_per_session = (int)hr_cfg_int(cfg, "dashboard.streams_per_session",
	                                              o->dash.streams_per_session, 1, 1000, err);
	o->dash.heartbeat_us = hr_cfg_int(cfg, "dashboard.heartbeat_ms",
	                                  o->dash.heartbeat_us / 1000, 100, 600000, err) *
	                       1000;
	/* configured logins (users.c), checked now, read at sign-in. */
	if (!err->code && api_users_check(cfg, err))
		return err->code;
	/* The scrape listener: absent, none (the API port's /metrics then
	 * needs `metrics:read`, as it does anyway). */
	const char *ml = hr_cfg_str(cfg, "server.metrics_listen", NULL, err);
	if (err->code)
		return err->code;
	if (ml) {
		if (split_listen(ml, mhost, mhostlen, &o->metrics_port, "server.metrics_listen",
		                 err))
			return err->code;
		o->metrics_listen_addr = mhost;
	}
	return err->code;
}

/*
 * Operator keys (server.operator_keys: env:/file: references, 32 characters
 * at least), hashed at start; the keys themselves are wiped. Operators
 * create and disable tenants and manage any tenant's units and keys; they
 * read and send nothing.
 */
static int read_operator_keys(json_t *cfg, char (**out)[65], size_t *n, struct hr_err *err)
{
	*out = NULL;
	*n = 0;
	json_t *keys = hr_cfg_get(cfg, "server.operator_keys");
	if (!keys)
		return 0;
	if (!json_is_array(keys) || json_array_size(keys) > 64)
		return hr_fail(err, HR_EINVAL, "server.operator_keys",
		               "server.operator_keys must be a list of at most 64 references");
	size_t k = json_array_size(keys);
	char(*h)[65] = calloc(k ? k : 1, sizeof *h);
	if (!h)
		return hr_fail(err, HR_ENOMEM, NULL, "out of memory");
	for (size_t i = 0; i < k; i++) {
		char f[48];
		snprintf(f, sizeof f, "server.operator_keys[%zu]", i);
		const char *ref = json_string_value(json_array_get(keys, i));
		if (!ref || (strncmp(ref, "env:", 4) != 0 && strncmp(ref, "file:", 5) != 0)) {
			free(h);
			return hr_fail(err, HR_EINVAL, f,
			               "%s must be an env: or file: reference (never the key itself)", f);
		}
		char *key = hr_secret_resolve(ref, f, err);
		if (!key || strlen(key) < 32) {
			if (key)
				hr_fail(err, HR_EINVAL, f, "%s is too short (32 chars at least)", f);
			hr_secret_free(key);
			free(h);
			return err->code;
		}
		hr_sha256_hex(key, strlen(key), h[i]);
		hr_secret_free(key);
	}
	*out = h;
	*n = k;
	return 0;
}

/* Each connection is a descriptor: raise the soft limit to the hard one, and
 * say so when even that cannot hold max_connections (MHD would stop
 * accepting at EMFILE, leaving new clients in the listen backlog, the very
 * stall the connection guard exists to prevent). 256 covers the store, the
 * dispatcher's connections to providers and the rest. */
static void raise_fd_limit(const struct api_opts *o)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return;
	if (rl.rlim_cur < rl.rlim_max) {
		rlim_t cur = rl.rlim_cur;
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
			rl.rlim_cur = cur;
	}
	rlim_t need = (rlim_t)o->max_connections + 256;
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need)
		hr_log(HR_LOG_WARN, "serve",
		       "server.max_connections is %d but only %llu files may be open "
		       "(raise `ulimit -n` to %llu or more)",
		       o->max_connections, (unsigned long long)rl.rlim_cur,
		       (unsigned long long)need);
}

static void report(const char *cmd, const struct hr_err *err)
{
	if (err->field[0] && !strstr(err->msg, err->field))
		fprintf(stderr, "herald %s: %s: %s\n", cmd, err->field, err->msg);
	else
		fprintf(stderr, "herald %s: %s\n", cmd, err->msg);
}

/* The secret watcher replaced accounts: the dispatcher picks them up. */
static void serve_accounts_changed(void *arg)
{
	dispatcher_notify(arg);
}

/* A run that wrote plugin events committed (store_observe): the events are
 * in the store's outbox; the deliverer (plugins/events.c) is woken. */
static void serve_plugin_notes(void *arg, const struct store_note *n, size_t k)
{
	(void)n;
	if (k)
		plugins_events_wake(arg);
}

/* /metrics' plugin series (metrics_set_extra). */
static void serve_plugin_metrics(void *arg, struct hr_buf *b)
{
	plugins_metrics_render(arg, b);
}

int serve_main(int argc, char **argv)
{
	struct serve_args a;
	int rc = parse_args(argc, argv, &a, "serve");
	if (rc)
		return rc == 1 ? 0 : rc;

	/* Block the stop signals in every thread; the main thread sigwait()s. */
	sigset_t stopset;
	sigemptyset(&stopset);
	sigaddset(&stopset, SIGINT);
	sigaddset(&stopset, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &stopset, NULL);
	signal(SIGPIPE, SIG_IGN);
	curl_global_init(CURL_GLOBAL_DEFAULT);

	struct hr_err err = {0};
	struct store *st = NULL;
	struct account_set accounts = {0};
	struct channel_policy policy = {0};
	struct dispatcher *disp = NULL;
	struct applier *app = NULL;
	struct callback_policy cbpolicy = {0};
	struct callback_tenant *cbt = NULL;
	size_t ncbt = 0;
	struct callbacks *cbs = NULL;
	struct reconciler *rec = NULL;
	struct api_server *srv = NULL;
	struct secret_watch *sw = NULL;
	char(*ophash)[65] = NULL;
	struct ds_registry *ds = NULL;
	struct plugins *plugins = NULL;
	struct pricing *pricing = NULL;
	char host[128], mhost[128];
	int status = 1;

	json_t *cfg = hr_config_load(a.config, &err);
	if (!cfg)
		goto out;
	struct dispatch_opts dopts;
	struct api_opts aopts;
	struct retention_opts ropts;
	struct callback_opts copts;
	struct reconcile_opts recopts;
	if (read_dispatch_opts(cfg, &dopts, &err) || read_callback_opts(cfg, &copts, &err) ||
	    read_reconcile_opts(cfg, &dopts, &recopts, &err) ||
	    read_api_opts(cfg, &a, &aopts, host, sizeof host, mhost, sizeof mhost, &err) ||
	    serve_retention_opts(cfg, &ropts, &err))
		goto out;
	raise_fd_limit(&aopts);
	if (channel_policy_init(&policy, cfg, &err) || callback_policy_init(&cbpolicy, cfg, &err) ||
	    callback_tenants_load(cfg, &policy, &cbpolicy, &cbt, &ncbt, &err) ||
	    open_store(cfg, &a, &st, &err) || serve_sync_config(cfg, st, &err) ||
	    api_users_check_tenants(cfg, st, &err) || /* the logins' tenants exist */
	    account_set_load_policy(st, &policy, &accounts, &err))
		goto out;
	account_set_public_url(&accounts, aopts.public_url);
	/* Plugins (plugins/plugins.h): every .so of plugins.dir loaded and
	 * checked now, or the start is refused naming the file. The data
	 * sources they query first. struct config is the config's root. */
	{
		char dserr[512] = "";
		if (ds_registry_open((const struct config *)cfg, &ds, dserr, sizeof dserr) != 0) {
			hr_fail(&err, HR_EINVAL, "data_sources", "%s", dserr);
			goto out;
		}
	}
	/* Campaigns may read the sources too (POST /v1/batches {"source"}). */
	aopts.datasources = ds;
	/* Prices for the uploads' cost estimates (campaigns/pricing.h). */
	if (pricing_load(hr_cfg_get(cfg, "pricing"), &pricing, &err))
		goto out;
	aopts.pricing = pricing;
	if (plugins_load(cfg, ds, &plugins, &err))
		goto out;
	plugins_set_store(plugins, st);
	if (plugins_events_start(plugins, st, &err))
		goto out;
	if (plugins_count(plugins))
		store_observe(serve_plugin_notes, plugins);
	metrics_set_extra(serve_plugin_metrics, plugins);
	dopts.plugins = plugins;
	/* Secret rotation (channel.h, secret_watch.c): a changed secret file is
	 * noticed within secret_check_ms; a replaced account's secrets still
	 * verify webhooks for secret_grace_s (0: never). */
	int64_t sw_every_us =
	    hr_cfg_int(cfg, "server.secret_check_ms", 5000, 10, 3600000, &err) * 1000;
	accounts.grace_us = hr_cfg_int(cfg, "server.secret_grace_s", 300, 0, 86400, &err) * 1000000;
	if (err.code)
		goto out;
	/* Accounts that fetch credentials in the background (RBM's access
	 * tokens) get a few seconds to have them before the first sends. */
	size_t unready = account_set_await_ready(&accounts, hr_mono_us() + 5000000);
	if (unready)
		hr_log(HR_LOG_WARN, "serve",
		       "%zu account(s) have no provider credentials yet; their sends wait and retry",
		       unready);
	/* Lease expiry is the reconciler's, on its own thread. */
	dopts.reconcile_every_us = 0;
	if (dispatcher_start(st, &accounts, &dopts, &disp, &err) ||
	    reconciler_start(st, &accounts, &recopts, &rec, &err) ||
	    applier_start(st, &accounts,
	                  (int)hr_cfg_int(cfg, "webhooks.apply_batch", 500, 1, 10000, &err), &app,
	                  &err) ||
	    callbacks_start(st, &copts, &cbpolicy, cbt, ncbt, &cbs, &err) ||
	    secret_watch_start(&accounts, sw_every_us, serve_accounts_changed, disp, &sw, &err))
		goto out;
	aopts.callback_policy = &cbpolicy;
	aopts.callback_tenants = cbt;
	aopts.ncallback_tenants = ncbt;
	aopts.max_attempts = dopts.max_attempts;
	aopts.store = st;
	aopts.accounts = &accounts;
	aopts.dispatcher = disp;
	aopts.applier = app;
	aopts.plugins = plugins;
	if (read_operator_keys(cfg, &ophash, &aopts.noperator, &err))
		goto out;
	aopts.operator_hashes = (const char(*)[65])ophash;
	if (api_start(&aopts, &srv, &err))
		goto out;

	int port = api_port(srv);
	if (a.port_file) {
		FILE *pf = fopen(a.port_file, "w");
		if (pf) {
			fprintf(pf, "%d\n", port);
			fclose(pf);
		}
	}
	printf("herald serve listening on http://%s:%d (store %s, %zu accounts)\n", host, port,
	       st->ops->name, accounts.n);
	if (aopts.metrics_listen_addr)
		printf("herald serve metrics for scraping on http://%s:%d/metrics\n", mhost,
		       api_metrics_port(srv));
	fflush(stdout);

	/* The main thread waits for a stop signal and, once a minute, applies
	 * retention (serve_retention_tick). */
	int sig = 0;
	for (;;) {
		struct timespec tick = {.tv_sec = 60};
		sig = sigtimedwait(&stopset, NULL, &tick);
		if (sig > 0)
			break;
		serve_retention_tick(st, &ropts);
	}
	hr_log(HR_LOG_INFO, "serve", "signal %d: stopping", sig);
	status = 0;
out:
	if (err.code)
		report("serve", &err);
	api_stop(srv);
	secret_watch_stop(sw);
	free(ophash);
	callbacks_stop(cbs);
	reconciler_stop(rec);
	dispatcher_stop(disp);
	applier_stop(app);
	metrics_set_extra(NULL, NULL);
	store_observe(NULL, NULL);
	plugins_free(plugins);
	ds_registry_close(ds);
	pricing_free(pricing);
	callback_tenants_free(cbt, ncbt);
	callback_policy_clear(&cbpolicy);
	account_set_clear(&accounts);
	channel_policy_clear(&policy);
	if (st)
		st->ops->close(st);
	json_decref(cfg);
	/* No token fetch may outlive libcurl's cleanup (an aborted one ends
	 * within about a second). */
	http_set_ca_file(NULL, NULL);
	if (rbm_refresher_quiesce(hr_mono_us() + 5000000))
		curl_global_cleanup();
	else
		hr_log(HR_LOG_WARN, "serve", "the RBM token thread did not end within 5 s");
	return status;
}

int migrate_copy_main(int argc, char **argv); /* api/migrate_copy.c */

int migrate_main(int argc, char **argv)
{
	/* --from/--to: copy an installation between stores (migrate_copy.c);
	 * otherwise apply the configured store's schema migrations. */
	for (int i = 1; i < argc; i++)
		if (!strncmp(argv[i], "--from", 6) || !strncmp(argv[i], "--to", 4))
			return migrate_copy_main(argc, argv);
	struct serve_args a;
	int rc = parse_args(argc, argv, &a, "migrate");
	if (rc)
		return rc == 1 ? 0 : rc;
	struct hr_err err = {0};
	struct store *st = NULL;
	json_t *cfg = hr_config_load(a.config, &err);
	int applied = 0;
	if (!cfg || open_store(cfg, &a, &st, &err) || st->ops->migrate(st, &applied, &err)) {
		report("migrate", &err);
		if (st)
			st->ops->close(st);
		json_decref(cfg);
		return 1;
	}
	printf("herald migrate: schema up to date (%s)\n", st->ops->name);
	st->ops->close(st);
	json_decref(cfg);
	return 0;
}
