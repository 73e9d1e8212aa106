// messages.js - #/messages?q=&status=&channel=: search across channels. The
// one box takes a Herald id (opens it), a phone number (to=) or a
// provider's message id (provider_id=).
import {api} from '../api.js';
import {el, put, fmtTime, badge, table, errorBox, go, timeRange} from '../ui.js';

const STATUSES = [
	'', 'queued', 'sending', 'sent', 'delivered', 'read', 'failed', 'undelivered', 'cancelled',
	'suppressed', 'expired', 'unknown'
];
const CHANNELS = [ '', 'whatsapp', 'sms', 'rcs', 'telegram' ];
const HERALD_ID = /^[0-9A-HJKMNP-TV-Z]{26}$/;
const PHONE = /^\+?[0-9 ()-]{6,20}$/;

export function queryFor(q)
{
	if (!q)
		return null;
	if (PHONE.test(q))
		return [ 'to', q.replace(/[ ()-]/g, '') ];
	return [ 'provider_id', q ];
}

export async function messages(main, args, params)
{
	const q = (params.get('q') || '').trim();
	const status = params.get('status') || '';
	const channel = params.get('channel') || '';
	if (HERALD_ID.test(q)) {
		go(`/message/${q}`);
		return;
	}
	const box = el('input', {
		id : 'm-q',
		type : 'search',
		value : q,
		placeholder : 'Herald id, phone number or provider id'
	});
	const st =
	    el('select', {id : 'm-status'},
	       STATUSES.map((s) => el('option', {value : s, selected : s === status}, s || 'any')));
	const ch = el(
	    'select', {id : 'm-channel'},
	    CHANNELS.map((s) => el('option', {value : s, selected : s === channel}, s || 'any')));
	const range = timeRange(params, 'm'); /* since/until in the URL */
	const form = el('form', {class : 'filters', role : 'search'}, el('label', {for: 'm-q'
	                }, 'Search'), box, el('label', {for: 'm-status'
	                }, 'Status'), st, el('label', {for: 'm-channel'
	                }, 'Channel'), ch, range.fields, el('button', {type : 'submit'}, 'Search'));
	form.addEventListener('submit', (ev) => {
		ev.preventDefault();
		const p = new URLSearchParams();
		if (box.value.trim())
			p.set('q', box.value.trim());
		if (st.value)
			p.set('status', st.value);
		if (ch.value)
			p.set('channel', ch.value);
		range.write(p);
		go('/messages', p);
	});
	const qs = new URLSearchParams({limit : '50'});
	const kv = queryFor(q);
	if (kv)
		qs.set(kv[0], kv[1]);
	if (status)
		qs.set('status', status);
	if (channel)
		qs.set('channel', channel);
	for (const k of [ 'since', 'until' ])
		if (params.get(k))
			qs.set(k, params.get(k));
	/* The same search as CSV (GET /v1/messages/export.csv): numbers in
	 * full, so the server asks a masked session to unmask first. */
	const ex = new URLSearchParams(qs);
	ex.delete('limit');
	const exportLink =
	    el('a',
	       {id : 'm-export', href : `/v1/messages/export.csv?${ex}`, download : 'messages.csv'},
	       'Export CSV');
	let results;
	try {
		const res = await api('GET', `/v1/messages?${qs}`);
		results =
		    res.data.length
		        ? table(
		              [
			              'Herald id', 'Recipient', 'Channel', 'Status', 'Provider id',
			              'Campaign', 'Updated'
		              ],
		              res.data.map(
		                  (m) => el('tr', {},
		                            el('td', {},
		                               el('a',
		                                  {href : `#/message/${encodeURIComponent(m.id)}`},
			                          m.id)),
			                    el('td', {}, m.to, ' ', el('a', {href : `#/recipient?message=${encodeURIComponent(m.id)}`, title : 'recipient history'}, 'history')), el('td', {}, m.channel),
			                    el('td', {}, badge(m.status)),
			                    el('td', {}, m.provider_id || '—'),
			                    el('td', {},
			                       m.batch_id
			                           ? el('a', {
				                             href : `#/campaign/${
					                         encodeURIComponent(m.batch_id)}`
				                     },
				                        'campaign')
				                   : '—'),
				            el('td', {}, fmtTime(m.updated_at)))),
			      `Messages (${res.data.length}${res.next_cursor ? '+' : ''})`)
			: el('p', {class : 'muted', id : 'm-none'}, 'No messages match.');
	} catch (e) {
		results = errorBox(e);
	}
	/* A phone number searched for: its whole history. */
	const hist = kv && kv[0] === 'to'
	                 ? el('a', {id : 'm-recipient', href : `#/recipient?${new URLSearchParams({to : q})}`},
	                      'Recipient history')
	                 : null;
	put(main, el('h1', {}, 'Messages'), form, el('p', {}, exportLink, hist ? ' · ' : null, hist), results);
}
