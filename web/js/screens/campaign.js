// campaign.js - #/campaign/<id>?status=: one campaign, live. The funnel
// and counters come from its per-status counters (kept in the same
// transaction as each message change), the chart from the settled count in
// each event (uPlot, vendored), the recipients from its messages.
import {api, liveCampaigns, hasScope} from '../api.js';
import {el, put, fmtTime, fmtNum, badge, table, progressBar, toast, errorBox, go} from '../ui.js';

function tableId(tid, ...args)
{
	const t = table(...args);
	t.id = tid;
	return t;
}

const FUNNEL = [ 'queued', 'sending', 'sent', 'delivered', 'read' ];
const OTHER = [ 'failed', 'undelivered', 'cancelled', 'suppressed', 'expired', 'unknown' ];
const FINAL = [ 'completed', 'cancelled', 'failed' ];

function funnel(b)
{
	const m = b.messages || {};
	const total = b.rows.valid || 1;
	const bar = (k) =>
	    el('div', {class : `fbar s-${k}`}, el('span', {class : 'fk'}, k),
	       el('span', {class : 'fv', 'data-k' : k}, fmtNum(m[k] || 0)), el('meter', {
		       min : '0',
		       max : String(total),
		       value : String(m[k] || 0),
		       'aria-label' : `${k}: ${m[k] || 0} of ${b.rows.valid}`
	       }));
	return el('section', {'aria-labelledby' : 'c-funnel'},
	          el('h2', {id : 'c-funnel'}, 'Funnel'),
	          el('div', {class : 'funnel'}, FUNNEL.map(bar)),
	          el('div', {class : 'funnel other'}, OTHER.map(bar)),
	          el('p', {}, `Replies and button presses: ${fmtNum(b.replied)}`));
}

function summary(b)
{
	return el('dl', {class: 'facts'},
	          el('dt', {}, 'Status'), el('dd', {id: 'c-status'}, badge(b.status)),
	          el('dt', {}, 'Progress'), el('dd', {}, progressBar(b), ' ', el('span', {id: 'c-settled'}, `${fmtNum(b.progress.settled)} / ${fmtNum(b.rows.valid)} settled`)),
	          el('dt', {}, 'Rows'), el('dd', {}, `${fmtNum(b.rows.total)} total, ${fmtNum(b.rows.valid)} valid, ${fmtNum(b.rows.invalid)} invalid, ${fmtNum(b.rows.duplicates)} duplicates`),
	          el('dt', {}, 'Channel'), el('dd', {}, `${b.channel} · ${b.account}`),
	          el('dt', {}, 'Unit'), el('dd', {}, b.unit || '—'),
	          el('dt', {}, 'Created'), el('dd', {}, fmtTime(b.times.created_at)),
	          el('dt', {}, 'Started'), el('dd', {}, fmtTime(b.times.started_at)),
	          el('dt', {}, 'Ended'), el('dd', {}, fmtTime(b.times.completed_at || b.times.cancelled_at || b.times.failed_at)),
	          pauseFacts(b),
	          b.retry_of ? [el('dt', {}, 'Resend of'), el('dd', {}, el('a', {href: `#/campaign/${encodeURIComponent(b.retry_of)}`}, b.retry_of))] : null,
	          b.retries && b.retries.length ? [el('dt', {}, 'Resent as'), el('dd', {}, b.retries.map((r) => el('a', {href: `#/campaign/${encodeURIComponent(r)}`}, r)))] : null,
	          b.error ? [el('dt', {}, 'Error'), el('dd', {}, b.error)] : null);
}

// Who paused, resumed or cancelled the campaign, when and why (the
// latest of each; the audit log keeps them all).
function pauseFacts(b)
{
	const op = b.operator || {};
	const out = [];
	if (b.times.paused_at)
		out.push(el('dt', {}, 'Paused'),
		         el('dd', {id : 'c-paused'},
		            `${fmtTime(b.times.paused_at)} by ${op.paused_by || '—'}`,
			    op.pause_reason ? ` — “${op.pause_reason}”` : ''));
	if (b.times.resumed_at)
		out.push(el('dt', {}, 'Resumed'),
		         el('dd', {id : 'c-resumed'},
		            `${fmtTime(b.times.resumed_at)} by ${op.resumed_by || '—'}`));
	if (b.status === 'cancelled' && (op.cancelled_by || op.cancel_reason))
		out.push(el('dt', {}, 'Cancelled by'),
		         el('dd', {id : 'c-cancelled'}, op.cancelled_by || '—',
		            op.cancel_reason ? ` — “${op.cancel_reason}”` : ''));
	return out.length ? out : null;
}

export async function campaign(main, args, params)
{
	const id = args[0];
	const status = params.get('status') || '';
	let b = await api('GET', `/v1/batches/${encodeURIComponent(id)}`);
	const write = hasScope('campaigns:write');
	const out = el('div', {id : 'c-result', role : 'status'});
	const actions = el('div', {class : 'actions'});
	// The reason a pause needs and a cancel may have; kept across the
	// live re-renders of the buttons (the same input element).
	const reason = el('input', {
		id : 'c-reason',
		type : 'text',
		maxlength : '200',
		placeholder : 'why (recorded with your name)',
		autocomplete : 'off'
	});
	const reasonBox = el('span', {class : 'reason'}, el('label', {for: 'c-reason'
	                     }, 'Reason '), reason);
	const renderActions = () => {
		put(actions);
		if (!write)
			return;
		if (!FINAL.includes(b.status))
			actions.append(reasonBox);
		if (b.status === 'processing')
			actions.append(el(
			    'button', {type : 'button', id : 'c-pause', onclick : pause}, 'Pause'));
		if (b.status === 'paused')
			actions.append(el('button',
			                  {type : 'button', id : 'c-resume', onclick : resume},
			                  'Resume'));
		if (!FINAL.includes(b.status))
			actions.append(el(
			    'button',
			    {type : 'button', id : 'c-cancel', class : 'danger', onclick : cancel},
			    'Cancel campaign'));
		const failed = (b.messages.failed || 0) + (b.messages.undelivered || 0);
		if (FINAL.includes(b.status) && failed > 0)
			actions.append(el('button',
			                  {type : 'button', id : 'c-resend', onclick : resend},
			                  `Resend ${fmtNum(failed)} failed`));
	};
	async function pause()
	{
		const why = reason.value.trim();
		if (!why) {
			put(out, el('p', {class : 'error', role : 'alert'},
			            'Give a reason to pause (it is recorded with your name).'));
			reason.focus();
			return;
		}
		try {
			const r = await api('POST', `/v1/batches/${encodeURIComponent(id)}/pause`,
				            {reason : why});
			put(out,
			    el('p', {},
			       `Paused: ${fmtNum(r.messages.queued || 0)} queued messages held; ` +
				   'what was being sent finishes.'));
			reason.value = '';
			update(r);
		} catch (e) {
			put(out, errorBox(e));
		}
	}
	async function resume()
	{
		try {
			const r = await api('POST', `/v1/batches/${encodeURIComponent(id)}/resume`);
			put(out, el('p', {}, 'Resumed: sending again.'));
			update(r);
		} catch (e) {
			put(out, errorBox(e));
		}
	}
	async function cancel()
	{
		if (!window.confirm(`Cancel “${b.name}”? Messages not yet sent will not be sent.`))
			return;
		const why = reason.value.trim();
		try {
			const r = await api('POST', `/v1/batches/${encodeURIComponent(id)}/cancel`,
				            why ? {reason : why} : {});
			put(out, el('p', {}, `Cancelled: ${fmtNum(r.stopped)} stopped.`));
			reason.value = '';
			b = r;
			update(b);
		} catch (e) {
			put(out, errorBox(e));
		}
	}
	async function resend()
	{
		try {
			const r = await api('POST', `/v1/batches/${encodeURIComponent(id)}/retry`,
				            {statuses : [ 'failed', 'undelivered' ]});
			put(out,
			    el('p', {},
			       `Resend campaign created with ${fmtNum(r.rows.valid)} recipients: `,
			       el('a', {
				       href : `#/campaign/${encodeURIComponent(r.id)}`,
				       id : 'c-resend-link'
			       },
				  r.name)));
			toast('Resend campaign created.');
		} catch (e) {
			put(out, errorBox(e));
		}
	}

	// The chart: settled, delivered and failed over time, from the live feed.
	const series = [ [], [], [], [] ];
	const chartBox = el('div', {
		id : 'c-chart',
		class : 'chart',
		role : 'img',
		'aria-label' : 'Settled, delivered and failed messages over time'
	});
	let plot = null;
	const point = (x) => {
		const m = x.messages || {};
		series[0].push(Date.now() / 1000);
		series[1].push(x.progress.settled);
		series[2].push((m.delivered || 0) + (m.read || 0));
		series[3].push((m.failed || 0) + (m.undelivered || 0));
		if (!window.uPlot)
			return;
		if (!plot) {
			plot = new window.uPlot({
				width : Math.min(760, main.clientWidth || 760),
				height : 220,
				series : [
					{}, {label : 'settled', stroke : '#1f4e8c'},
					{label : 'delivered', stroke : '#1a7f37'},
					{label : 'failed', stroke : '#b42318'}
				],
				axes : [ {}, {} ]
			},
			                        series, chartBox);
		} else {
			plot.setData(series);
		}
	};

	// Failures by provider code and replies by kind and button: a bounded
	// read on the server (GET .../breakdown), loaded with the screen and
	// again when the campaign settles, never on every live event.
	const breakdown = el('section', {'aria-labelledby' : 'c-bd-h', id : 'c-breakdown'});
	const loadBreakdown = async () => {
		let x;
		try {
			x = await api('GET', `/v1/batches/${encodeURIComponent(id)}/breakdown`);
		} catch (e) {
			put(breakdown, errorBox(e));
			return;
		}
		const f = x.failures, rp = x.replies;
		put(breakdown, el('h2', {id : 'c-bd-h'}, 'Failures and replies'),
		    f.by_code.length
		        ? tableId('c-fail-codes', [ 'Provider code', 'Example', 'Messages' ],
		                  f.by_code.map((c) => el('tr', {}, el('td', {}, c.code || '(none)'),
		                                          el('td', {}, c.text),
		                                          el('td', {class : 'num'}, fmtNum(c.count)))),
		                  `Failures by provider code (${fmtNum(f.total)} failed${f.sampled ? `; ${fmtNum(f.counted)} read` : ''})`)
		        : el('p', {class : 'muted', id : 'c-fail-codes'}, 'No failures.'),
		    rp.by.length
		        ? tableId('c-replies', [ 'Kind', 'Button', 'Replies' ],
		                  rp.by.map((k) => el('tr', {}, el('td', {}, k.kind),
		                                      el('td', {}, k.payload || '—'),
		                                      el('td', {class : 'num'}, fmtNum(k.count)))),
		                  `Replies and button presses (${fmtNum(rp.replied_messages)} messages answered; among the latest ${fmtNum(rp.latest_replies_read)} replies received)`)
		        : el('p', {class : 'muted', id : 'c-replies'}, 'No replies yet.'));
	};

	// The recipients, filtered by status (in the URL).
	const recipients = el('section', {'aria-labelledby' : 'c-rcpt'});
	const loadRecipients = async () => {
		const q = new URLSearchParams({limit : '100'});
		if (status)
			q.set('status', status);
		const res = await api('GET', `/v1/batches/${encodeURIComponent(id)}/messages?${q}`);
		const sel =
		    el('select', {
			    id : 'c-rstatus',
			    onchange : (ev) => {
			            const p = new URLSearchParams();
			            if (ev.target.value)
				            p.set('status', ev.target.value);
			            go(`/campaign/${encodeURIComponent(id)}`, p);
			    }
		    },
		       [ '', ...FUNNEL, ...OTHER ].map(
		           (s) => el('option', {value : s, selected : s === status}, s || 'any')));
		put(recipients, el('h2', {id : 'c-rcpt'}, 'Recipients'),
		    el('label',
		       {for: 'c-rstatus'
		       },
		       'Status '),
		    sel,
		    table(
		        [ 'Recipient', 'Status', 'Provider id', 'Error', 'Updated' ],
		        res.data.map(
		            (m) => el(
		                'tr', {},
		                el('td', {},
		                   el('a', {href : `#/message/${encodeURIComponent(m.id)}`}, m.to)),
			        el('td', {}, badge(m.status)), el('td', {}, m.provider_id || '—'),
			        el('td', {}, m.error ? `${m.error.code}: ${m.error.message}` : ''),
				el('td', {}, fmtTime(m.updated_at))))),
		    res.next_cursor ? el('p', {class : 'muted'}, 'First 100 shown; export for all.')
				    : null);
	};

	const head = el('div');
	const update = (x) => {
		b = x;
		put(head, summary(b), funnel(b));
		renderActions();
		point(b);
	};
	put(main, el('h1', {}, `Campaign: ${b.name}`), actions, out, head,
	    el('section', {'aria-labelledby' : 'c-chart-h'},
	       el('h2', {id : 'c-chart-h'}, 'Throughput'), chartBox),
	    breakdown, recipients,
	    el('p', {},
	       el('a', {href : `/v1/batches/${encodeURIComponent(id)}/export.csv`, download : ''},
		  'Export CSV'),
	       ' (needs numbers unmasked)'));
	update(b);
	await loadRecipients();
	await loadBreakdown();
	let lastSettled = b.progress.settled;
	const es = liveCampaigns((data) => {
		for (const x of data)
			if (x.id === id) {
				update(Object.assign({}, b, x));
				if (x.progress.settled !== lastSettled && FINAL.includes(x.status)) {
					loadRecipients();
					loadBreakdown();
				}
				lastSettled = x.progress.settled;
			}
	}, id);
	return () => es.close();
}
