// suppressions.js - #/suppressions?channel=: opt-outs with their reasons;
// removal (audited by the server) needs the number, so it is offered once
// numbers are unmasked.
import {api, currentSession, hasScope} from '../api.js';
import {el, put, fmtTime, table, errorBox, go, toast} from '../ui.js';

export async function suppressions(main, args, params)
{
	const channel = params.get('channel') || '';
	const ch = el('select', {id : 's-channel'},
	              [ '', 'whatsapp', 'sms', 'rcs', 'telegram' ].map(
	                  (c) => el('option', {value : c, selected : c === channel}, c || 'any')));
	ch.addEventListener('change', () => {
		const p = new URLSearchParams();
		if (ch.value)
			p.set('channel', ch.value);
		go('/suppressions', p);
	});
	let body;
	try {
		const res = await api(
		    'GET',
		    `/v1/suppressions${channel ? `?channel=${encodeURIComponent(channel)}` : ''}`);
		const canRemove = hasScope('suppressions:write') && !currentSession().masked;
		body =
		    res.data.length
		        ? table(
		              [ 'Channel', 'Recipient', 'Reason', 'Since', '' ],
		              res.data.map(
		                  (s) => el(
		                      'tr', {}, el('td', {}, s.channel), el('td', {}, s.to),
		                      el('td', {}, s.reason), el('td', {}, fmtTime(s.created_at)),
		                      el(
		                          'td', {},
		                          canRemove ? el('button', {
			                          type : 'button',
			                          class :
			                              'link',
			                          onclick : async () => {
			                                  if (!window.confirm(`Allow messages to ${
				                                  s.to} on ${s.channel} again?`))
				                                  return;
			                                  try {
				                                  await api('DELETE',
				                                            `/v1/suppressions/${
					                                        encodeURIComponent(
					                                            s.channel)}/${
						                                encodeURIComponent(
						                                    s.to)}`);
				                                  toast(
				                                      'Removed; recorded in the audit log.');
				                                  go('/suppressions', params);
				                                  window.dispatchEvent(
				                                      new HashChangeEvent(
				                                          'hashchange'));
			                                  } catch (e) {
				                                  toast(e.message, true);
			                                  }
			                          }
		                          },
		                                         'Remove')
		                                    : ''))),
		              `Opt-outs (${res.data.length})`)
			: el('p', {class : 'muted'}, 'No opt-outs.');
	} catch (e) {
		body = errorBox(e);
	}
	put(main, el('h1', {}, 'Suppression list'), el('label', {for: 's-channel'
	    }, 'Channel '), ch, body);
}
