/*
 * lc_plugin.c - which changes the business-unit plugins hear of, decided
 * once above every backend (store.h: plugin_event_row). lc_transition and
 * the reply path call in here inside the transaction that makes the change,
 * so the plugin_event row commits or rolls back with it.
 *
 * Only tenants with a plugin's on_status (on_reply) bound to one of their
 * units get rows: the set (store_plugin_tenants_set) is a sorted array
 * behind one atomic pointer, so every other tenant's change costs one load
 * (the set empty) or one binary search. The row also leaves a note for the
 * store's observer (store_observe), which only wakes the deliverer; the
 * row is what is delivered.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "store/lifecycle.h"

struct pt_entry {
	char *tenant;
	bool status, reply;
};

struct pt_set {
	size_t n;
	struct pt_entry e[];
};

static _Atomic(struct pt_set *) pt_current;

void plugin_event_row_clear(struct plugin_event_row *r)
{
	free(r->text);
	free(r->payload);
	memset(r, 0, sizeof *r);
}

static void pt_free(struct pt_set *s)
{
	for (size_t i = 0; s && i < s->n; i++)
		free(s->e[i].tenant);
	free(s);
}

static int pt_cmp(const void *a, const void *b)
{
	return strcmp(((const struct pt_entry *)a)->tenant, ((const struct pt_entry *)b)->tenant);
}

int store_plugin_tenants_set(const struct store_plugin_tenant *t, size_t n)
{
	struct pt_set *s = NULL;
	int rc = 0;
	if (n) {
		s = calloc(1, sizeof *s + n * sizeof s->e[0]);
		for (size_t i = 0; s && i < n; i++) {
			if (!t[i].tenant_id || (!t[i].status && !t[i].reply))
				continue;
			/* A tenant named twice: its hooks merged. */
			struct pt_entry *have = NULL;
			for (size_t k = 0; k < s->n && !have; k++)
				if (strcmp(s->e[k].tenant, t[i].tenant_id) == 0)
					have = &s->e[k];
			if (have) {
				have->status |= t[i].status;
				have->reply |= t[i].reply;
				continue;
			}
			if (!(s->e[s->n].tenant = strdup(t[i].tenant_id))) {
				pt_free(s);
				s = NULL;
				break;
			}
			s->e[s->n].status = t[i].status;
			s->e[s->n].reply = t[i].reply;
			s->n++;
		}
		if (!s)
			rc = HR_ENOMEM;
		else if (s->n == 0) {
			pt_free(s);
			s = NULL;
		} else {
			qsort(s->e, s->n, sizeof s->e[0], pt_cmp);
		}
	}
	pt_free(atomic_exchange(&pt_current, s));
	return rc;
}

/* The tenant's entry, or NULL: not a plugin tenant. */
static const struct pt_entry *pt_find(const char *tenant)
{
	struct pt_set *s = atomic_load_explicit(&pt_current, memory_order_acquire);
	if (!s || !tenant)
		return NULL;
	struct pt_entry key = {.tenant = (char *)tenant};
	return bsearch(&key, s->e, s->n, sizeof s->e[0], pt_cmp);
}

int lc_plugin_status(struct store_tx *tx, const struct lc_msg *m, enum msg_status from)
{
	if (from == m->status)
		return 0;
	const struct pt_entry *e = pt_find(m->tenant_id);
	if (!e || !e->status || !tx->ops->plugin_event_add)
		return 0;
	struct lc_plugin_event pe = {.message_id = m->id,
	                             .tenant_id = m->tenant_id,
	                             .kind = PLUGIN_EV_STATUS,
	                             .prev_status = (int)from,
	                             .status = (int)m->status};
	int rc = tx->ops->plugin_event_add(tx, &pe);
	if (rc == 0)
		lc_note_status(tx, m->id, m->tenant_id, (int)from, (int)m->status);
	return rc;
}

/* s cut to PLUGIN_EV_TEXT_MAX bytes on a character boundary into *buf
 * (heap) when longer; s itself otherwise. */
static const char *cut(const char *s, char **buf, bool *oom)
{
	if (!s || strlen(s) < PLUGIN_EV_TEXT_MAX)
		return s;
	if (!(*buf = malloc(PLUGIN_EV_TEXT_MAX))) {
		*oom = true;
		return NULL;
	}
	hr_utf8_copy(*buf, s, PLUGIN_EV_TEXT_MAX);
	return *buf;
}

int lc_plugin_reply(struct store_tx *tx, const char *message_id, const char *tenant_id,
                    const char *text, const char *payload)
{
	if (!message_id || !message_id[0])
		return 0;
	const struct pt_entry *e = pt_find(tenant_id);
	if (!e || !e->reply || !tx->ops->plugin_event_add)
		return 0;
	char *tb = NULL, *pb = NULL;
	bool oom = false;
	struct lc_plugin_event pe = {.message_id = message_id,
	                             .tenant_id = tenant_id,
	                             .kind = PLUGIN_EV_REPLY,
	                             .prev_status = -1,
	                             .status = -1,
	                             .text = cut(text, &tb, &oom),
	                             .payload = cut(payload, &pb, &oom)};
	int rc = oom ? hr_fail(tx->ops->err(tx), HR_ENOMEM, "plugin_event", "out of memory")
	             : tx->ops->plugin_event_add(tx, &pe);
	free(tb);
	free(pb);
	if (rc == 0)
		lc_note_reply(tx, message_id, tenant_id, NULL, NULL);
	return rc;
}
