// overview.js - #/overview: what an on-call engineer looks at first. Every
// figure comes from counters kept as messages change (the campaigns'
// per-status counts, the live feed), never from a scan of messages.
import {api, liveCampaigns} from '../api.js';
import {el, put, fmtNum, table} from '../ui.js';
import {campaignRow, CAMPAIGN_HEADERS} from './campaigns.js';

const FUNNEL = [
	'queued', 'sending', 'sent', 'delivered', 'read', 'failed', 'undelivered', 'cancelled',
	'suppressed', 'expired', 'unknown'
];

function totals(list)
{
	const t = {};
	for (const b of list)
		for (const [k, v] of Object.entries(b.messages || {}))
			t[k] = (t[k] || 0) + v;
	return t;
}

// dashobs: accounts that do not send (paused, held by a provider, blocked)
// or fail more than ALERT_ERROR_RATE of their recent sends.
const ALERT_ERROR_RATE = 0.2;
function accountAlerts(healths)
{
	return healths.filter((h) => h && !h.error)
	    .filter((h) => h.state !== 'active' ||
	                   (h.recent.error_rate !== null && h.recent.error_rate > ALERT_ERROR_RATE))
	    .map((h) => el('li', {'data-account-alert' : h.account},
	                   el('a', {href : '#/accounts'}, h.account),
	                   h.state === 'paused'    ? ` paused: ${h.paused.reason || ''}`
	                   : h.state === 'held'    ? ` held: ${h.held_reason || ''}`
	                   : h.state === 'blocked' ? ` blocked: ${h.blocked_reason || ''}`
	                                           : ` ${Math.round(h.recent.error_rate * 100)}% of ` +
	                                                 'recent sends failed'));
}

// dashobs: today vs yesterday per channel, and the delivery rate per day,
// from the daily counters (GET /v1/stats/daily); null for a unit session.
const KINDS = [ 'accepted', 'sent', 'delivered', 'read', 'failed' ];
function pct(x)
{
	return x === null || x === undefined ? '—' : `${Math.round(x * 1000) / 10}%`;
}

function dailySection(daily)
{
	if (!daily || daily.days.length < 2)
		return null;
	const today = daily.days[daily.days.length - 1];
	const yday = daily.days[daily.days.length - 2];
	const rows = today.channels.map((c) => {
		const y = yday.channels.find((x) => x.channel === c.channel) || {};
		return el(
		    'tr', {'data-channel' : c.channel}, el('th', {scope : 'row'}, c.channel),
		    KINDS.map((k) => el('td', {class : 'num', 'data-k' : k},
		                        `${fmtNum(c[k])} / ${fmtNum(y[k] || 0)}`)),
		    el('td', {class : 'num'}, `${pct(c.delivery_rate)} / ${pct(y.delivery_rate)}`));
	});
	const trend = daily.days.map((d) => {
		const sent = d.channels.reduce((a, c) => a + c.sent, 0);
		const del = d.channels.reduce((a, c) => a + c.delivered, 0);
		return el('tr', {}, el('th', {scope : 'row'}, d.date),
		          el('td', {class : 'num'}, fmtNum(sent)),
		          el('td', {class : 'num'}, fmtNum(del)),
		          el('td', {class : 'num'}, sent ? pct(del / sent) : '—'));
	});
	return [
		el('section', {'aria-labelledby' : 'o-daily', id : 'o-daily-s'},
		   el('h2', {id : 'o-daily'}, 'Today vs yesterday (UTC), per channel'),
		   table([ 'Channel', ...KINDS, 'delivery rate' ], rows,
		         'Each cell: today / yesterday')),
		el('section', {'aria-labelledby' : 'o-trend'},
		   el('h2', {id : 'o-trend'}, 'Delivery rate, last 14 days'),
		   table([ 'Day (UTC)', 'Sent', 'Delivered', 'Rate' ], trend, 'Oldest first')),
		el('section', {'aria-labelledby' : 'o-codes'},
		   el('h2', {id : 'o-codes'}, 'Top failure codes, last 14 days'),
		   daily.failure_codes.length
		       ? table([ 'Channel', 'Code', 'Messages', 'Meaning' ],
		               daily.failure_codes.map(
		                   (f) => el('tr', {'data-code' : f.code}, el('td', {}, f.channel),
		                             el('td', {}, el('a', {
			                                href : `#/messages?${new URLSearchParams({status : 'failed', channel : f.channel})}`
		                                }, f.code)),
		                             el('td', {class : 'num'}, fmtNum(f.count)),
		                             el('td', {}, f.meaning || '—'))),
		               'Most frequent first')
		       : el('p', {class : 'muted'}, 'No failures.'))
	];
}

function render(main, list, accounts, healths, daily)
{
	const t = totals(list);
	const accAlerts = accountAlerts(healths || []);
	const active = list.filter((b) => b.status === 'processing' || b.status === 'validated');
	const failedCampaigns = list.filter((b) => b.status === 'failed');
	put(main, el('h1', {}, 'Overview'),
	    el('section', {'aria-labelledby' : 'o-totals'},
	       el('h2', {id : 'o-totals'}, 'Recent campaigns’ messages by status'),
	       el('dl', {class : 'cards'},
	          FUNNEL.map((k) => el('div', {class : `card s-${k}`}, el('dt', {}, k),
		                       el('dd', {'data-k' : k}, fmtNum(t[k] || 0)))))),
	    dailySection(daily),
	    el('section', {'aria-labelledby' : 'o-alerts'}, el('h2', {id : 'o-alerts'}, 'Alerts'),
	       failedCampaigns.length || (t.failed || 0) > 0 || accAlerts.length
		   ? el('ul', {}, accAlerts,
		        failedCampaigns.map(
		            (b) => el(
		                'li', {},
		                el('a', {href : `#/campaign/${encodeURIComponent(b.id)}`}, b.name),
			        ` failed: ${b.error || 'see detail'}`)),
			(t.failed || 0) > 0
			    ? el('li', {},
				 `${fmtNum(t.failed)} failed messages in recent campaigns — `,
				 el('a', {href : '#/messages?status=failed'}, 'see them'))
			    : null)
		   : el('p', {class : 'muted'}, 'Nothing needs attention.')),
	    el('section', {'aria-labelledby' : 'o-active'},
	       el('h2', {id : 'o-active'}, `Active campaigns (${active.length})`),
	       active.length ? table(CAMPAIGN_HEADERS, active.map((b) => campaignRow(b)))
			     : el('p', {class : 'muted'}, 'None running.')),
	    el('section', {'aria-labelledby' : 'o-acc'},
	       el('h2', {id : 'o-acc'}, 'Sender accounts'),
	       el('p', {}, `${accounts.length} account(s) — `,
		  el('a', {href : '#/accounts'}, 'health'))));
}

export async function overview(main)
{
	const [b, a] = await Promise.all([
		api('GET', '/v1/batches?limit=20'),
		api('GET', '/v1/channels').catch(() => ({data : []}))
	]);
	const h = await Promise.all(a.data.map(
	    (x) => api('GET', `/v1/channels/${encodeURIComponent(x.id)}/health`).catch(() => null)));
	const daily = await api('GET', '/v1/stats/daily?days=14').catch(() => null);
	render(main, b.data, a.data, h, daily);
	const es = liveCampaigns((data) => render(main, data, a.data, h, daily));
	return () => es.close();
}
