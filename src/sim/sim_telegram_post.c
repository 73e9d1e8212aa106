/*
 * sim_telegram_post.c - the Telegram simulator's update poster: one thread
 * posting queued updates (scripted presses and replies, raw updates) to
 * {herald}/webhooks/telegram/{account} with X-Telegram-Bot-Api-Secret-Token,
 * one at a time in due order, retrying failures with backoff until
 * webhook_retry_s has passed since the first attempt, as Telegram does.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/crypto.h"
#include "core/ratelimit.h"
#include "sim/sim_int.h"
#include "sim/sim_telegram_int.h"

#define TG_POST_TIMEOUT_MS 10000L
#define TG_RETRY_BASE_US 250000
#define TG_RETRY_MAX_US 8000000

void sim_tg_post_free(struct tg_post *p)
{
	if (p)
		free(p->body);
	free(p);
}

/* Inserts by due time; the caller holds qlock. */
static void tg_queue_insert(struct sim_tg *t, struct tg_post *p)
{
	struct tg_post **pp = &t->queue;
	while (*pp && (*pp)->due <= p->due)
		pp = &(*pp)->next;
	p->next = *pp;
	*pp = p;
	pthread_cond_signal(&t->qcond);
}

/* Queues an update (takes body) to be posted after delay_us. */
bool sim_tg_post_submit(struct sim *s, int acct, char *body, int64_t delay_us)
{
	struct sim_tg *t = s->tg;
	struct tg_post *p = body ? calloc(1, sizeof *p) : NULL;
	if (!p) {
		free(body);
		return false;
	}
	p->acct = acct;
	p->body = body;
	p->due = hr_mono_us() + delay_us;
	pthread_mutex_lock(&t->qlock);
	bool ok = !t->stop;
	if (ok) {
		atomic_fetch_add(&t->pending, 1);
		atomic_fetch_add(&s->stats.wh_pending, 1);
		tg_queue_insert(t, p);
	}
	pthread_mutex_unlock(&t->qlock);
	if (!ok)
		sim_tg_post_free(p);
	return ok;
}

/* One POST of an update, as Telegram makes it: JSON and the secret token. */
static bool tg_post_once(CURL *e, const struct tg_account *a, const struct tg_post *p, char *why,
                         size_t whysz)
{
	char hdr[320];
	snprintf(hdr, sizeof hdr, "X-Telegram-Bot-Api-Secret-Token: %s", a->secret);
	struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
	struct curl_slist *h2 = h ? curl_slist_append(h, hdr) : NULL;
	struct curl_slist *h3 = h2 ? curl_slist_append(h2, "Expect:") : NULL;
	if (!h3) {
		curl_slist_free_all(h);
		snprintf(why, whysz, "out of memory");
		return false;
	}
	curl_easy_reset(e);
	CURLcode cc = sim_post_setup(e, a->webhook_url, p->body, strlen(p->body), h, NULL,
	                             TG_POST_TIMEOUT_MS, 3000L);
	if (cc != CURLE_OK) {
		curl_slist_free_all(h);
		snprintf(why, whysz, "cannot set up the transfer: %s", curl_easy_strerror(cc));
		return false;
	}
	cc = curl_easy_perform(e);
	long status = 0;
	curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
	curl_slist_free_all(h);
	if (cc != CURLE_OK)
		snprintf(why, whysz, "%s", curl_easy_strerror(cc));
	else
		snprintf(why, whysz, "HTTP %ld", status);
	return cc == CURLE_OK && status >= 200 && status < 300;
}

/* Posts due updates one at a time; a failure is retried with backoff until
 * webhook_retry_s has passed since the first attempt, as Telegram does. */
void *sim_tg_poster_main(void *arg)
{
	struct sim *s = arg;
	struct sim_tg *t = s->tg;
	CURL *e = curl_easy_init();
	pthread_mutex_lock(&t->qlock);
	while (!t->stop) {
		int64_t now = hr_mono_us();
		if (!t->queue || t->queue->due > now) {
			if (!t->queue) {
				pthread_cond_wait(&t->qcond, &t->qlock);
			} else {
				int64_t until = t->queue->due;
				struct timespec ts = {.tv_sec = (time_t)(until / 1000000),
				                      .tv_nsec = (long)(until % 1000000) * 1000};
				pthread_cond_timedwait(&t->qcond, &t->qlock, &ts);
			}
			continue;
		}
		struct tg_post *p = t->queue;
		t->queue = p->next;
		pthread_mutex_unlock(&t->qlock);

		if (!p->first_at)
			p->first_at = now;
		p->attempts++;
		char why[96];
		bool ok = e && tg_post_once(e, &t->accounts[p->acct], p, why, sizeof why);
		if (!e)
			snprintf(why, sizeof why, "curl_easy_init failed");
		struct tg_knobs *k = sim_tg_knobs_get(t);
		double retry_s = k->webhook_retry_s;
		sim_tg_knobs_unref(k);
		bool done = true;
		if (ok) {
			atomic_fetch_add(&t->posted, 1);
			atomic_fetch_add(&s->stats.wh_posted, 1);
			atomic_fetch_add(&s->stats.wh_inbound, 1);
		} else {
			atomic_fetch_add(&t->failed, 1);
			atomic_fetch_add(&s->stats.wh_failed, 1);
			int64_t delay = backoff_delay_us(p->attempts, TG_RETRY_BASE_US,
			                                 TG_RETRY_MAX_US, hr_random_unit());
			int64_t at = hr_mono_us() + delay;
			if (at - p->first_at <= (int64_t)(retry_s * 1e6)) {
				hr_log(HR_LOG_DEBUG, "sim",
				       "telegram update to %s failed (%s), retry %d",
				       t->accounts[p->acct].webhook_url, why, p->attempts);
				p->due = at;
				done = false;
			} else {
				hr_log(HR_LOG_WARN, "sim",
				       "telegram update to %s given up after %d attempts (%s)",
				       t->accounts[p->acct].webhook_url, p->attempts, why);
				atomic_fetch_add(&t->dropped, 1);
				atomic_fetch_add(&s->stats.wh_dropped, 1);
			}
		}
		pthread_mutex_lock(&t->qlock);
		if (done) {
			atomic_fetch_sub(&t->pending, 1);
			atomic_fetch_sub(&s->stats.wh_pending, 1);
			sim_tg_post_free(p);
		} else {
			tg_queue_insert(t, p);
		}
	}
	pthread_mutex_unlock(&t->qlock);
	if (e)
		curl_easy_cleanup(e);
	return NULL;
}
