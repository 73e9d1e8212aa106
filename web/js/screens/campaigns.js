// campaigns.js - #/campaigns?status=&name=: the list, live through
// GET /v1/events (progress bars and counters move as messages settle; the
// rate is the change of settled messages between two events).
import {api, liveCampaigns, hasScope} from '../api.js';
import {el, put, fmtTime, fmtNum, badge, table, progressBar, go, toast, errorBox, timeRange} from '../ui.js';

// "1 h 02 min", "3 min 05 s", "12 s" (null: —).
function fmtDuration(s)
{
	if (s === null || s === undefined || !isFinite(s) || s < 0)
		return '—';
	s = Math.round(s);
	const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), x = s % 60;
	if (h)
		return `${h} h ${String(m).padStart(2, '0')} min`;
	if (m)
		return `${m} min ${String(x).padStart(2, '0')} s`;
	return `${x} s`;
}

// Started to ended (or now, while it runs).
function duration(b)
{
	const t = b.times || {};
	if (!t.started_at)
		return null;
	const end = t.completed_at || t.cancelled_at || t.failed_at;
	return ((end ? Date.parse(end) : Date.now()) - Date.parse(t.started_at)) / 1000;
}

// Pause (with a reason), resume or cancel (a reason optional) from the
// list; the row is replaced by the answer.
async function act(b, what, box)
{
	const path = `/v1/batches/${encodeURIComponent(b.id)}/${what}`;
	let body;
	if (what === 'pause' || what === 'cancel') {
		const why = window.prompt(what === 'pause' ? `Pause “${b.name}”: why? (recorded with your name)`
		                                           : `Cancel “${b.name}”? Messages not yet sent will not be sent. Reason (optional):`);
		if (why === null)
			return null;
		if (what === 'pause' && !why.trim()) {
			toast('A pause needs a reason.', true);
			return null;
		}
		body = why.trim() ? {reason : why.trim()} : {};
	}
	try {
		const r = await api('POST', path, body);
		toast(what === 'cancel' ? `Cancelled: ${fmtNum(r.stopped)} stopped.` : `Campaign ${r.status}.`);
		return r;
	} catch (e) {
		put(box, errorBox(e));
		return null;
	}
}

function actions(b, box, onDone)
{
	if (!hasScope('campaigns:write'))
		return '';
	const btn = (what, label, cls) =>
	    el('button', {type : 'button', class : cls || '', 'data-act' : what,
	                  'aria-label' : `${label} ${b.name}`,
	                  onclick : async () => { const r = await act(b, what, box); if (r) onDone(r); }},
	       label);
	const out = [];
	if (b.status === 'processing')
		out.push(btn('pause', 'Pause'));
	if (b.status === 'paused')
		out.push(btn('resume', 'Resume'));
	if ([ 'pending', 'validated', 'processing', 'paused' ].includes(b.status))
		out.push(btn('cancel', 'Cancel', 'danger'));
	return out;
}

const STATUSES =
    [ '', 'pending', 'validated', 'processing', 'paused', 'completed', 'cancelled', 'failed' ];

export function campaignRow(b, rates, box, onDone)
{
	const m = b.messages || {};
	const rate = rates && rates.get(b.id);
	const eta = b.progress && b.progress.eta_seconds;
	return el('tr', {'data-id' : b.id},
	          el('td', {}, el('a', {href : `#/campaign/${encodeURIComponent(b.id)}`}, b.name)),
		  el('td', {}, badge(b.status)), el('td', {}, b.unit || '—'),
		  el('td', {}, `${b.channel} · ${b.account}`), el('td', {}, progressBar(b)),
		  el('td', {class : 'num', 'data-k' : 'settled'},
		     `${fmtNum(b.progress.settled)} / ${fmtNum(b.rows.valid)}`),
		  el('td', {class : 'num'}, fmtNum((m.delivered || 0) + (m.read || 0))),
		  el('td', {class : 'num'}, fmtNum(m.failed || 0)),
		  el('td', {class : 'num'}, rate ? `${rate.toFixed(1)}/s` : '—'),
		  el('td', {class : 'num', 'data-k' : 'eta'}, eta === null || eta === undefined ? '—' : fmtDuration(eta)),
		  el('td', {class : 'num', 'data-k' : 'duration'}, fmtDuration(duration(b))),
		  el('td', {}, fmtTime(b.times.created_at)),
		  box ? el('td', {class : 'row-actions'}, actions(b, box, onDone)) : null);
}

export const CAMPAIGN_HEADERS = [
	'Name', 'Status', 'Unit', 'Channel · account', 'Progress', 'Settled', 'Delivered', 'Failed',
	'Rate', 'ETA', 'Duration', 'Created'
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
	for (const k of ['since', 'until']) /* the time range */
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
	const result = el('div', {id : 'cl-result', role : 'status'});
	const replace = (b) => {
		const old = main.querySelector(`tr[data-id="${CSS.escape(b.id)}"]`);
		if (old)
			old.replaceWith(campaignRow(b, rates, result, replace));
	};
	const rows = res.data.map((b) => campaignRow(b, rates, result, replace));
	put(main, el('h1', {}, 'Campaigns'), form,
	    el('p', {}, el('a', {href : '#/upload', class : 'button'}, 'New campaign (upload)')), result,
	    table([ ...CAMPAIGN_HEADERS, 'Actions' ], rows, 'Campaigns, newest first (live)'),
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
			const row = campaignRow(b, rates, result, replace);
			const old = main.querySelector(`tr[data-id="${CSS.escape(b.id)}"]`);
			if (old)
				old.replaceWith(row);
			else if (tbody())
				tbody().prepend(row);
		}
	});
	return () => es.close();
}
