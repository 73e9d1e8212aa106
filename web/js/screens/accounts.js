// accounts.js - #/accounts: the tenant's sender accounts and their health
// (GET /v1/channels/{id}/health): active, paused (by whom, why), held by a
// provider's rate limit or blocked credentials; configured vs observed
// rate (last minute); queue depth; error rate over 15 minutes; last
// success and webhook; token expiry (RCS); pause and resume for sessions
// with accounts:write (recorded in the audit log). The observed figures
// are the answering node's.
import {api, hasScope} from '../api.js';
import {el, put, fmtTime, fmtNum, table, badge, toast, errorBox} from '../ui.js';

function stateCell(h)
{
	const why = h.state === 'paused' ? `${h.paused.reason || ''} (by ${h.paused.by || '?'})`
		    : h.state === 'held' ? `${h.held_reason || ''} until ${fmtTime(h.held_until)}`
		    : h.state === 'blocked' ? h.blocked_reason || ''
					    : '';
	return el('td', {class : 'h-state'}, badge(h.state), why ? ` ${why}` : '');
}

function errorRate(h)
{
	const r = h.recent;
	const n = r.ok + r.failed + r.retried;
	if (!n)
		return '—';
	return `${Math.round(r.error_rate * 1000) / 10}% of ${fmtNum(n)}${
	    h.last_error ? ` (last ${h.last_error})` : ''}`;
}

async function pauseOrResume(a, h, redraw)
{
	const pause = h.state !== 'paused';
	const reason = window.prompt(pause ? `Why pause ${a.id}? (recorded in the audit log)`
		                           : `Why resume ${a.id}? (recorded in the audit log)`);
	if (reason === null || (pause && !reason.trim()))
		return;
	try {
		await api('POST',
		          `/v1/channels/${encodeURIComponent(a.id)}/${pause ? 'pause' : 'resume'}`,
			  {reason : reason.trim()});
		toast(pause ? `${a.id} paused; its messages stay queued.` : `${a.id} resumed.`);
		redraw();
	} catch (e) {
		toast(e.message, true);
	}
}

export async function accounts(main)
{
	const draw = async () => {
		const acc = await api('GET', '/v1/channels');
		const healths = await Promise.all(acc.data.map(
		    (a) => api('GET', `/v1/channels/${encodeURIComponent(a.id)}/health`)
			       .catch((e) => ({error : e}))));
		const canChange = hasScope('accounts:write');
		const rows = acc.data.map((a, i) => {
			const h = healths[i];
			if (h.error)
				return el('tr', {'data-account' : a.id}, el('td', {}, a.id),
				          el('td', {}, a.channel),
				          el('td', {colspan : '8'}, errorBox(h.error)));
			return el(
			    'tr', {'data-account' : a.id, 'data-state' : h.state},
			    el('td', {}, a.id), el('td', {}, a.channel), stateCell(h),
			    el('td', {class : 'num h-rate'},
			       `${fmtNum(h.configured_rate)}/s · ${h.observed_rate.toFixed(2)}/s`),
			    el('td', {class : 'num h-queue'},
			       `${fmtNum(h.queue_depth)}${h.queue_depth_capped ? '+' : ''}`),
			    el('td', {class : 'h-errors'}, errorRate(h)),
			    el('td', {}, fmtTime(h.last_success_at)),
			    el('td', {}, fmtTime(h.last_webhook_at)),
			    el('td', {},
			       h.has_token ? (h.token_expires_at ? fmtTime(h.token_expires_at)
							         : h.token_error || 'none yet')
					   : '—'),
			    el('td', {},
			       canChange ? el('button', {
				       type : 'button',
				       class : 'link h-toggle',
				       onclick : () =>
					   pauseOrResume(a, h, () => draw().catch(() => {}))
			       },
					      h.state === 'paused' ? 'Resume' : 'Pause')
					 : ''));
		});
		put(main, el('h1', {}, 'Sender accounts'),
		    table(
		        [
			        'Account', 'Channel', 'State', 'Rate (configured · observed)',
			        'Queued', 'Errors (15 min)', 'Last success', 'Last webhook',
			        'Token expires', ''
		        ],
		        rows, 'Health (observed figures: this node’s, last minute and 15 minutes)'),
		    el('h2', {}, 'Webhook URLs'),
		    table([ 'Account', 'Webhook URL', 'Policy' ],
		          acc.data.map((a) => el('tr', {}, el('td', {}, a.id),
		                                 el('td', {}, el('code', {}, a.webhook_url || '—')),
		                                 el('td', {}, a.delivery_policy))),
		          'Where each provider sends its receipts'));
	};
	await draw();
}
