// message.js - #/message/<id>: one recipient's timeline: every attempt and
// every provider event as received, applied or ignored (stale, duplicate)
// with the reason; the fallback route; copy as JSON.
import {api} from '../api.js';
import {el, put, fmtTime, badge, table, toast} from '../ui.js';

function detailText(d)
{
	if (!d || typeof d !== 'object')
		return '';
	return Object.entries(d)
	    .filter(([ k ]) => k !== 'ignored')
	    .map(([ k, v ]) => `${k}: ${typeof v === 'object' ? JSON.stringify(v) : v}`)
	    .join(', ');
}

export async function message(main, args)
{
	const m = await api('GET', `/v1/messages/${encodeURIComponent(args[0])}`);
	const events = m.events || [];
	const rows = events.map((e) => {
		const ignored = !e.applied && e.detail && e.detail.ignored;
		return el('tr', {class : ignored ? 'ignored' : '', 'data-type' : e.type},
		          el('td', {}, fmtTime(e.at)), el('td', {}, e.type), el('td', {}, e.source),
		          el('td', {}, e.status ? badge(e.status) : '—'),
		          el('td', {},
		             e.applied ? 'applied'
		                       : el('strong', {class : 'ign'},
		                            `ignored${ignored ? ` (${e.detail.ignored})` : ''}`)),
			  el('td', {}, fmtTime(e.provider_at)),
			  el('td', {class : 'detail'}, detailText(e.detail)));
	});
	const copy = el('button', {type : 'button', id : 'msg-copy'}, 'Copy as JSON');
	copy.addEventListener('click', async () => {
		try {
			await navigator.clipboard.writeText(JSON.stringify(m, null, 2));
			toast('Copied.');
		} catch (e) {
			toast('The browser refused the clipboard.', true);
		}
	});
	put(main, 
	    el('h1', {}, 'Message ', el('code', {}, m.id)),
	    el('dl', {class: 'facts'},
	       el('dt', {}, 'Status'), el('dd', {id: 'msg-status'}, badge(m.status)),
	       el('dt', {}, 'Recipient'), el('dd', {}, m.to, ' ', el('a', {id: 'msg-recipient', href: `#/recipient?message=${encodeURIComponent(m.id)}`}, 'history')),
	       el('dt', {}, 'Channel'), el('dd', {}, `${m.channel} · ${m.account}`),
	       el('dt', {}, 'Provider id'), el('dd', {id: 'msg-pid'}, m.provider_id || '—'),
	       el('dt', {}, 'Attempts'), el('dd', {}, String(m.attempts)),
	       el('dt', {}, 'Policy'), el('dd', {}, m.delivery_policy),
	       el('dt', {}, 'Error'), el('dd', {}, m.error ? `${m.error.code}: ${m.error.message}` : '—'),
	       el('dt', {}, 'Campaign'), el('dd', {}, m.batch_id ? el('a', {href: `#/campaign/${encodeURIComponent(m.batch_id)}`}, m.batch_id) : '—'),
	       el('dt', {}, 'Body'), el('dd', {}, m.body || '—')),
	    copy,
	    el('h2', {id: 'msg-tl'}, 'Timeline'),
	    table(['At', 'Event', 'Source', 'Status', 'Outcome', 'Provider time', 'Detail'], rows, 'Every attempt and provider event, oldest first'),
	    m.route ? [el('h2', {}, 'Fallback route'),
	               table(['Step', 'Channel', 'Account', 'Message', 'Status'],
	                     m.route.steps.map((s) => el('tr', {}, el('td', {}, String(s.step)), el('td', {}, s.channel), el('td', {}, s.account),
	                                                 el('td', {}, s.message_id ? el('a', {href: `#/message/${encodeURIComponent(s.message_id)}`}, s.message_id) : '—'),
	                                                 el('td', {}, s.status ? badge(s.status) : '—'))))] : null);
}
