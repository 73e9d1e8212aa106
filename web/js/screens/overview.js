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

// accounts that do not send (paused, held by a provider, blocked)
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

// today vs yesterday per channel, and the delivery rate per day,
// from the daily counters (GET /v1/stats/daily); null for a unit session.
const KINDS = [ 'accepted', 'sent', 'delivered', 'read', 'failed' ];
function pct(x)
{
	return x === null || x === undefined ? '—' : `${Math.round(x * 1000) / 10}%`;
}

// the delivery-rate trend as a chart (uPlot, vendored): one series
// per channel, delivered / sent per UTC day, a gap where a channel sent
// nothing that day. The chart is an image to assistive technology (its
// label says what it shows); the same figures are a table beside it, in a
// disclosure, for screen readers and for anyone who wants the numbers.
const CHANNEL_COLOURS = {whatsapp : '#1a7f37', sms : '#1f4e8c', rcs : '#8250df', telegram : '#bc4c00'};
const MORE_COLOURS = [ '#6e7781', '#953800', '#0550ae', '#cf222e' ];

function dayRate(d, ch)
{
	const c = d.channels.find((x) => x.channel === ch);
	return c && c.sent ? (c.delivered / c.sent) * 100 : null;
}

function trendSection(daily, width)
{
	const days = daily.days;
	const channels = [];
	for (const d of days)
		for (const c of d.channels)
			if (!channels.includes(c.channel))
				channels.push(c.channel);
	const xs = days.map((d) => Date.parse(`${d.date}T00:00:00Z`) / 1000);
	const data = [ xs, ...channels.map((ch) => days.map((d) => dayRate(d, ch))) ];
	const last = days[days.length - 1];
	const now = channels.map((ch) => {
		const r = dayRate(last, ch);
		return `${ch} ${r === null ? 'no sends' : pct(r / 100)} today`;
	});
	const box = el('div', {
		id : 'o-trend-chart',
		class : 'chart',
		role : 'img',
		'aria-label' : `Delivery rate (delivered of sent) per channel and UTC day, last ${days.length} days` +
				   (now.length ? `: ${now.join(', ')}` : ''),
		'data-series' : channels.length
	});
	let plot = null;
	const draw = () => {
		if (!window.uPlot || !channels.length || plot)
			return;
		let more = 0;
		plot = new window.uPlot({
			width,
			height : 220,
			tzDate : (ts) => window.uPlot.tzDate(new Date(ts * 1000), 'Etc/UTC'),
			scales : {y : {range : [ 0, 100 ]}},
			series : [
				{label : 'Day (UTC)', value : '{YYYY}-{MM}-{DD}'},
				...channels.map((ch) => ({
					label : ch,
					stroke : CHANNEL_COLOURS[ch] || MORE_COLOURS[more++ % MORE_COLOURS.length],
					width : 2,
					spanGaps : false,
					points : {show : true, size : 6},
					value : (u, v) => (v === null || v === undefined ? '—' : `${v.toFixed(1)}%`)
				}))
			],
			axes : [ {}, {values : (u, ticks) => ticks.map((t) => `${t}%`)} ]
		},
		                        data, box);
		box.plot = plot; // the drawn series and points (the browser test reads them)
	};
	const rows = days.map((d) => el(
	    'tr', {'data-day' : d.date}, el('th', {scope : 'row'}, d.date), channels.map((ch) => {
		    const c = d.channels.find((x) => x.channel === ch) || {sent : 0, delivered : 0};
		    return el('td', {class : 'num', 'data-channel' : ch},
		              c.sent ? `${pct(c.delivered / c.sent)} (${fmtNum(c.delivered)} of ${fmtNum(c.sent)})`
		                     : '—');
	    })));
	const section = el(
	    'section', {'aria-labelledby' : 'o-trend', id : 'o-trend-s'},
	    el('h2', {id : 'o-trend'}, `Delivery rate, last ${days.length} days`),
	    channels.length ? box : el('p', {class : 'muted'}, 'No messages in these days.'),
	    el('details', {id : 'o-trend-data', open : !window.uPlot && channels.length ? true : undefined},
	       el('summary', {}, 'The figures as a table'),
	       el('div', {id : 'o-trend-table'},
	          table([ 'Day (UTC)', ...channels ], rows,
	                'Delivered of sent per channel and day, oldest first'))));
	return {section, draw, destroy : () => (plot ? plot.destroy() : null)};
}

// The daily sections, made once per visit to the overview (the live feed
// redraws the rest; these come from GET /v1/stats/daily only).
function dailySection(daily, width)
{
	if (!daily || daily.days.length < 2)
		return {nodes : null, draw : () => null, destroy : () => null};
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
	const trend = trendSection(daily, width);
	return {
		nodes : [
			el('section', {'aria-labelledby' : 'o-daily', id : 'o-daily-s'},
			   el('h2', {id : 'o-daily'}, 'Today vs yesterday (UTC), per channel'),
			   table([ 'Channel', ...KINDS, 'delivery rate' ], rows,
				 'Each cell: today / yesterday')),
			trend.section,
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
						     el('td', {class : 'meaning'}, f.meaning || '—'))),
				       'Most frequent first')
			       : el('p', {class : 'muted'}, 'No failures.'))
		],
		draw : trend.draw, // once the section is in the page
		destroy : trend.destroy
	};
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
	    daily,
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
	const ds = dailySection(daily, Math.min(760, main.clientWidth || 760));
	render(main, b.data, a.data, h, ds.nodes);
	ds.draw();
	const es = liveCampaigns((data) => render(main, data, a.data, h, ds.nodes));
	return () => {
		es.close();
		ds.destroy();
	};
}
