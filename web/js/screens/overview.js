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

function render(main, list, accounts, healths)
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
	render(main, b.data, a.data, h);
	const es = liveCampaigns((data) => render(main, data, a.data, h));
	return () => es.close();
}
