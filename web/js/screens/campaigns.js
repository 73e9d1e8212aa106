// campaigns.js - #/campaigns?status=&name=: the list, live through
// GET /v1/events (progress bars and counters move as messages settle; the
// rate is the change of settled messages between two events).
import {api, liveCampaigns} from '../api.js';
import {el, put, fmtTime, fmtNum, badge, table, progressBar, go, timeRange} from '../ui.js';

const STATUSES = [ '', 'pending', 'validated', 'processing', 'completed', 'cancelled', 'failed' ];

export function campaignRow(b, rates)
{
	const m = b.messages || {};
	const rate = rates && rates.get(b.id);
	return el('tr', {'data-id' : b.id},
	          el('td', {}, el('a', {href : `#/campaign/${encodeURIComponent(b.id)}`}, b.name)),
		  el('td', {}, badge(b.status)), el('td', {}, b.unit || '—'),
		  el('td', {}, `${b.channel} · ${b.account}`), el('td', {}, progressBar(b)),
		  el('td', {class : 'num', 'data-k' : 'settled'},
		     `${fmtNum(b.progress.settled)} / ${fmtNum(b.rows.valid)}`),
		  el('td', {class : 'num'}, fmtNum((m.delivered || 0) + (m.read || 0))),
		  el('td', {class : 'num'}, fmtNum(m.failed || 0)),
		  el('td', {class : 'num'}, rate ? `${rate.toFixed(1)}/s` : '—'),
		  el('td', {}, fmtTime(b.times.created_at)));
}

export const CAMPAIGN_HEADERS = [
	'Name', 'Status', 'Unit', 'Channel · account', 'Progress', 'Settled', 'Delivered', 'Failed',
	'Rate', 'Created'
];

export async function campaigns(main, args, params)
{
	const status = params.get('status') || '';
	const name = params.get('name') || '';
	const q = new URLSearchParams();
	if (status)
		q.set('status', status);
	if (name)
		q.set('name', name);
	for (const k of [ 'since', 'until' ]) /* dashobs: the time range */
		if (params.get(k))
			q.set(k, params.get(k));
	q.set('limit', '50');
	const res = await api('GET', `/v1/batches?${q}`);
	const sel =
	    el('select', {id : 'f-status'},
	       STATUSES.map((s) => el('option', {value : s, selected : s === status}, s || 'any')));
	const nm = el('input', {id : 'f-name', type : 'search', value : name});
	const range = timeRange(params, 'f');
	const form = el('form', {class : 'filters', role : 'search'}, el('label', {for: 'f-status'
	                }, 'Status'), sel, el('label', {for: 'f-name'
	                }, 'Name'), nm, range.fields, el('button', {type : 'submit'}, 'Filter'));
	form.addEventListener('submit', (ev) => {
		ev.preventDefault();
		const p = new URLSearchParams();
		if (sel.value)
			p.set('status', sel.value);
		if (nm.value)
			p.set('name', nm.value);
		range.write(p);
		go('/campaigns', p);
	});
	const rates = new Map();
	const last = new Map();
	const tbody = () => main.querySelector('tbody');
	const rows = res.data.map((b) => campaignRow(b, rates));
	put(main, el('h1', {}, 'Campaigns'), form,
	    el('p', {}, el('a', {href : '#/upload', class : 'button'}, 'New campaign (upload)')),
	    table(CAMPAIGN_HEADERS, rows, 'Campaigns, newest first (live)'),
	    res.data.length ? null : el('p', {class : 'muted'}, 'No campaigns match.'));
	// Live: each event's campaigns replace their rows (filtered like the list).
	const es = liveCampaigns((data) => {
		const now = performance.now();
		for (const b of data) {
			if ((status && b.status !== status) || (name && !b.name.includes(name)))
				continue;
			const since = params.get('since'), until = params.get('until');
			const made = Date.parse((b.times && b.times.created_at) || b.created_at);
			if ((since && made < Date.parse(since)) || (until && made >= Date.parse(until)))
				continue; /* outside the time range */
			const prev = last.get(b.id);
			if (prev && now > prev.t)
				rates.set(b.id, Math.max(0, (b.progress.settled - prev.settled) /
				                                ((now - prev.t) / 1000)));
			last.set(b.id, {t : now, settled : b.progress.settled});
			const row = campaignRow(b, rates);
			const old = main.querySelector(`tr[data-id="${CSS.escape(b.id)}"]`);
			if (old)
				old.replaceWith(row);
			else if (tbody())
				tbody().prepend(row);
		}
	});
	return () => es.close();
}
