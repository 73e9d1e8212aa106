// recipient.js - #/recipient?to=<phone>, or #/recipient?message=<id> (a
// masked session never sees the number, so message detail and search link
// by message): one recipient across campaigns and channels. Its opt-out
// state per channel and that state's history (added when, why, from which
// message, by whom; removed when, by whom), its replies, and the tenant's
// messages to it, newest first, paged with the cursor kept in the URL.
import {api} from '../api.js';
import {el, put, fmtTime, badge, table, errorBox, go} from '../ui.js';

function msgLink(id)
{
	return id ? el('a', {href : `#/message/${encodeURIComponent(id)}`}, id) : '—';
}

function optOutRows(r)
{
	return r.opt_out.map((o) =>
	                         el('tr', {'data-channel' : o.channel}, el('td', {}, o.channel),
	                            el('td', {},
	                               o.suppressed ? el('strong', {class : 'optout'}, 'opted out')
	                                            : 'may be messaged'),
	                            el('td', {}, o.reason || '—'), el('td', {}, fmtTime(o.since))));
}

function historyRows(r)
{
	return r.opt_out_history.map(
	    (h) =>
	        el('tr', {'data-action' : h.action}, el('td', {}, fmtTime(h.at)),
	           el('td', {}, h.channel), el('td', {}, h.action), el('td', {}, h.reason || '—'),
	           el('td', {}, msgLink(h.message_id)), el('td', {}, h.by || '—')));
}

function replyRows(r)
{
	return r.replies.map(
	    (x) => el('tr', {}, el('td', {}, fmtTime(x.received_at)),
	              el('td', {}, x.channel || '—'), el('td', {}, x.kind || '—'),
	              el('td', {}, x.text || (x.payload ? `button: ${x.payload}` : '—')),
		      el('td', {}, msgLink(x.message_id))));
}

function messageRows(r)
{
	return r.messages.map(
	    (m) =>
	        el('tr', {}, el('td', {}, msgLink(m.id)), el('td', {}, m.channel),
	           el('td', {}, badge(m.status)), el('td', {}, m.error ? `${m.error.code}` : '—'),
		   el('td', {},
		      m.batch_id ? el('a', {href : `#/campaign/${encodeURIComponent(m.batch_id)}`},
			              'campaign')
			         : '—'),
		   el('td', {}, fmtTime(m.created_at))));
}

export async function recipient(main, args, params)
{
	const to = (params.get('to') || '').trim();
	const message = params.get('message') || '';
	const cursor = params.get('cursor') || '';
	const box = el('input', {
		id : 'r-to',
		type : 'search',
		value : to,
		placeholder : 'Phone number in any form, or chat id'
	});
	const form = el('form', {class : 'filters', role : 'search'}, el('label', {for: 'r-to'
	                }, 'Recipient'), box, el('button', {type : 'submit'}, 'Show history'));
	form.addEventListener('submit', (ev) => {
		ev.preventDefault();
		const p = new URLSearchParams();
		if (box.value.trim())
			p.set('to', box.value.trim());
		go('/recipient', p);
	});
	if (!to && !message) {
		put(main, el('h1', {}, 'Recipient history'), form,
		    el('p', {class : 'muted'},
		       'Enter a phone number to see every message, reply and ' +
		           'opt-out of it.'));
		return;
	}
	const qs = new URLSearchParams({limit : '50'});
	if (cursor)
		qs.set('cursor', cursor);
	const path = message ? `/v1/messages/${encodeURIComponent(message)}/recipient`
		             : `/v1/recipients/${encodeURIComponent(to)}`;
	let r;
	try {
		r = await api('GET', `${path}?${qs}`);
	} catch (e) {
		put(main, el('h1', {}, 'Recipient history'), form,
		    e.status === 404 ? el('p', {class : 'muted', id : 'r-none'},
		                          'No messages, replies or opt-outs for this recipient.')
		                     : errorBox(e));
		return;
	}
	const older = new URLSearchParams(message ? {message} : {to});
	let pager = null;
	if (r.next_cursor) {
		older.set('cursor', r.next_cursor);
		pager = el('a', {id : 'r-older', href : `#/recipient?${older}`}, 'Older messages');
	}
	put(main, el('h1', {}, 'Recipient ', el('span', {id : 'r-to-shown'}, r.to)), form,
	    el('h2', {}, 'Opt-out state'),
	    table([ 'Channel', 'State', 'Reason', 'Since' ], optOutRows(r), 'Per channel'),
	    el('h2', {}, 'Opt-out history'),
	    r.opt_out_history.length
	        ? el('div', {id : 'r-history'},
	             table([ 'At', 'Channel', 'Change', 'Reason', 'Source message', 'By' ],
	                   historyRows(r), 'Newest first (latest 100)'))
	        : el('p', {class : 'muted'}, 'Never opted out.'),
	    el('h2', {}, 'Replies'),
	    r.replies.length ? el('div', {id : 'r-replies'},
	                          table([ 'Received', 'Channel', 'Kind', 'Text', 'In reply to' ],
	                                replyRows(r), 'Newest first (latest 100)'))
	                     : el('p', {class : 'muted'}, 'No replies.'),
	    el('h2', {}, 'Messages'),
	    r.messages.length
	        ? el('div', {id : 'r-messages'},
	             table([ 'Herald id', 'Channel', 'Status', 'Error', 'Campaign', 'Created' ],
	                   messageRows(r),
	                   `Across campaigns and channels, newest first${
		               cursor ? ' (older page)' : ''}`))
		: el('p', {class : 'muted'}, 'No messages on this page.'),
	    pager);
}
