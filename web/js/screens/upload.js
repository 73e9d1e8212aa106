// upload.js - #/upload: a campaign file (.csv or .xlsx) checked before
// anything is sent. The upload is made with start=false, so the server
// validates every row and keeps the campaign waiting; the report (counts,
// reasons, bad rows with row, column and reason) is shown, then the valid
// rows are started or the whole upload discarded.
import {api} from '../api.js';
import {el, put, fmtNum, table, errorBox, go, badge} from '../ui.js';

const CHANNELS = [ 'whatsapp', 'sms', 'rcs', 'telegram' ];

function tableId(id, ...args)
{
	const t = table(...args);
	t.id = id;
	return t;
}

// The cost estimate of the rows that will be sent (the server's, from the
// config's prices): the total or "no prices configured", SMS segments, and
// the breakdown by channel, country and WhatsApp category.
function estimate(e)
{
	if (!e)
		return null;
	const money = (x) =>
	    (x === null || x === undefined ? '—' : `${x.toFixed(4)} ${e.currency}`);
	const head =
	    e.priced ? el('p', {id : 'u-cost'},
	                  'Estimated cost: ', el('strong', {id : 'u-total-cost'}, money(e.total)),
	                  e.unpriced_messages
	                      ? ` (${fmtNum(e.unpriced_messages)} messages have no price)`
		              : '')
		     : el('p', {id : 'u-cost'},
		          'Estimated cost: ', el('strong', {id : 'u-total-cost'}, e.note));
	return el(
	    'section', {'aria-labelledby' : 'u-est-h', id : 'u-estimate'},
	    el('h3', {id : 'u-est-h'}, 'Cost estimate'), head,
	    el('p', {}, `${fmtNum(e.messages)} messages, `,
	       el('span', {id : 'u-segments'}, fmtNum(e.sms_segments)), ' SMS segments'),
	    e.category_note ? el('p', {class : 'muted'}, e.category_note) : null,
	    e.by.length
		? table(
		      [
			      'Channel', 'Country code', 'Category', 'Messages', 'Units',
			      'Unit price', 'Cost'
		      ],
		      e.by.map(
		          (g) => el('tr', {}, el('td', {}, g.channel),
		                    el('td', {}, g.country_code ? `+${g.country_code}` : 'other'),
			            el('td', {}, g.category || '—'),
			            el('td', {class : 'num'}, fmtNum(g.messages)),
			            el('td', {class : 'num'}, fmtNum(g.units)),
			            el('td', {class : 'num'}, e.priced ? money(g.unit_price) : '—'),
			            el('td', {class : 'num'}, e.priced ? money(g.cost) : '—'))),
		      'Estimate by channel, country and category')
		: null);
}

async function report(box, b)
{
	const id = encodeURIComponent(b.id);
	const errs = await api('GET', `/v1/batches/${id}/errors?limit=1000`);
	const byReason = new Map();
	for (const e of errs.data)
		byReason.set(e.reason, (byReason.get(e.reason) || 0) + 1);
	const result = el('div', {id : 'u-result', role : 'status'});
	const start = el('button', {type : 'button', id : 'u-start', disabled : b.rows.valid === 0},
	                 `Start ${fmtNum(b.rows.valid)} valid rows`);
	const discard =
	    el('button', {type : 'button', id : 'u-discard', class : 'danger'}, 'Discard upload');
	start.addEventListener('click', async () => {
		try {
			await api('POST', `/v1/batches/${id}/start`);
			go(`/campaign/${id}`);
		} catch (e) {
			put(result, errorBox(e));
		}
	});
	discard.addEventListener('click', async () => {
		try {
			await api('DELETE', `/v1/batches/${id}`);
			put(box, el('p', {id : 'u-discarded'},
			            `Upload “${b.name}” discarded: nothing was sent.`));
		} catch (e) {
			put(result, errorBox(e));
		}
	});
	put(box, el('h2', {id : 'u-report', 'data-id' : b.id}, 'Validation report'),
	    el('dl', {class : 'cards', 'aria-labelledby' : 'u-report'},
	       el('div', {class : 'card'}, el('dt', {}, 'Rows'),
	          el('dd', {id : 'u-total'}, fmtNum(b.rows.total))),
	       el('div', {class : 'card s-delivered'}, el('dt', {}, 'Valid'),
	          el('dd', {id : 'u-valid'}, fmtNum(b.rows.valid))),
	       el('div', {class : 'card s-failed'}, el('dt', {}, 'Invalid'),
	          el('dd', {id : 'u-invalid'}, fmtNum(b.rows.invalid))),
	       el('div', {class : 'card s-cancelled'}, el('dt', {}, 'Duplicates'),
	          el('dd', {id : 'u-dups'}, fmtNum(b.rows.duplicates)))),
	    el('p', {}, 'Status: ', badge(b.status)), estimate(b.estimate),
	    byReason.size ? table([ 'Reason', 'Rows' ],
	                          [...byReason ]
	                              .sort((a, c) => c[1] - a[1])
	                              .map(([ r, n ]) => el('tr', {}, el('td', {}, r),
	                                                    el('td', {class : 'num'}, fmtNum(n)))),
	                          'Problems by reason')
	                  : null,
	    errs.data.length
	        ? tableId('u-bad', [ 'Row', 'Column', 'Value', 'Reason' ],
	                  errs.data.slice(0, 200).map(
	                      (e) => el('tr', {}, el('td', {class : 'num'}, e.row),
	                                el('td', {}, e.column), el('td', {}, e.recipient),
	                                el('td', {}, e.reason))),
	                  `Invalid rows (${Math.min(200, errs.data.length)} shown of ${
			      fmtNum(b.rows.invalid)})`)
		: null,
	    el('p', {},
	       el('a', {href : `/v1/batches/${id}/errors?format=csv`, download : ''},
		  'Download the report (CSV)'),
	       ' (needs numbers unmasked)'),
	    el('div', {class : 'actions'}, start, discard), result);
}

export async function upload(main)
{
	const acc = await api('GET', '/v1/channels').catch(() => ({data : []}));
	const f = {
		file : el('input',
		          {id : 'u-file', type : 'file', accept : '.csv,.xlsx', required : true}),
		name : el('input', {id : 'u-name', required : true, maxlength : '127'}),
		channel : el('select', {id : 'u-channel'},
		             CHANNELS.map((c) => el('option', {value : c}, c))),
		account :
		    el('select', {id : 'u-account'},
		       acc.data.map((a) => el('option', {value : a.id}, `${a.id} (${a.channel})`))),
		text : el('textarea', {id : 'u-text', rows : '3'}),
		region :
		    el('input', {id : 'u-region', maxlength : '2', size : '3', placeholder : 'GB'}),
	};
	const box = el('section', {'aria-live' : 'polite'});
	// The preview: the file's columns and first rows as the server reads
	// them (POST /v1/batches with preview: nothing is created), the
	// mapping to choose, and each number as given and as normalised.
	const prevBox = el('section', {id : 'u-prevbox', 'aria-live' : 'polite'});
	let mapping = null; // {recipient_column, params[]} once previewed
	const common = (fd) => {
		fd.append('name', f.name.value || 'preview');
		fd.append('channel', f.channel.value);
		if (f.account.value)
			fd.append('account', f.account.value);
		fd.append('text', f.text.value);
		if (f.region.value)
			fd.append('default_region', f.region.value.toUpperCase());
		if (mapping && mapping.recipient_column)
			fd.append('recipient_column', mapping.recipient_column);
		if (mapping && mapping.params && mapping.params.length &&
		    mapping.params.every((x) => x))
			fd.append('params', mapping.params.join(','));
	};
	const preview = async () => {
		if (!f.file.files[0]) {
			put(prevBox, el('p', {class : 'error', role : 'alert'},
			                'Choose a file to preview.'));
			return;
		}
		const fd = new FormData();
		common(fd);
		fd.append('preview', '10');
		fd.append('file', f.file.files[0]);
		put(prevBox, el('p', {class : 'muted'}, 'Reading the first rows…'));
		let p;
		try {
			p = await api('POST', '/v1/batches', fd);
		} catch (e) {
			put(prevBox, errorBox(e));
			return;
		}
		const m = p.mapping;
		mapping = {
			recipient_column : m.recipient_column,
			params : m.params ? [...m.params ] : Array(m.placeholders).fill('')
		};
		const pick = (id, label, value, onchange) => {
			const sel =
			    el('select', {id, onchange : (ev) => onchange(ev.target.value)},
			       el('option', {value : ''}, '(choose)'),
			       p.headers.map(
			           (h) => el('option', {value : h, selected : h === value}, h)));
			return [
				el('label',
				   {for: id
				   },
				   label),
				sel
			];
		};
		const again = () => preview();
		const selects = [...pick('u-rcol', 'Recipient column', m.recipient_column, (v) => {
			mapping.recipient_column = v;
			again();
		}) ];
		for (let i = 0; i < m.placeholders; i++)
			selects.push(...pick(`u-p${i + 1}`, `Placeholder {{${i + 1}}}`,
					     mapping.params[i], (v) => {
				                     mapping.params[i] = v;
				                     if (mapping.params.every((x) => x))
					                     again();
					     }));
		const verdict = (r) => r.valid === undefined ? '—'
		                       : r.valid             ? 'ok'
		                       : r.duplicate         ? 'duplicate (skipped)'
		                                     : `${r.error.column}: ${r.error.reason}`;
		put(prevBox, el('h2', {id : 'u-prev-h'}, 'Preview'),
		    el('p', {}, `Columns: ${p.headers.join(', ')}`),
		    el('div', {class : 'stack', id : 'u-mapping'}, selects),
		    m.error ? el('p', {class : 'error', id : 'u-map-error', role : 'alert'},
			         m.error.message)
			    : null,
		    tableId(
			'u-prev', [ 'Row', 'Recipient as given', 'E.164', 'Sent to', 'Check' ],
			p.rows.map(
			    (r) =>
			        el('tr', {}, el('td', {class : 'num'}, r.row),
			           el('td', {}, r.recipient ? r.recipient.given : '—'),
			           el('td', {class : 'e164'},
			              r.recipient ? (r.recipient.e164 || r.recipient.reason) : '—'),
			           el('td', {},
			              r.recipient && r.recipient.normalized ? r.recipient.normalized
			                                                    : '—'),
			           el('td', {class : 'check'}, verdict(r)))),
			`First ${p.rows.length} rows${
			    p.more ? ' (more follow)' : ''}; nothing is created yet`));
	};
	const form = el(
	    'form', {class : 'stack', 'aria-labelledby' : 'u-h'},
	    el('label',
	       {for: 'u-file'
	       },
	       'Recipients file (.csv or .xlsx)'),
	    f.file,
	    el('label',
	       {for: 'u-name'
	       },
	       'Campaign name'),
	    f.name,
	    el('label',
	       {for: 'u-channel'
	       },
	       'Channel'),
	    f.channel,
	    el('label',
	       {for: 'u-account'
	       },
	       'Sender account'),
	    f.account,
	    el('label',
	       {for: 'u-text'
	       },
	       'Text (placeholders {{1}}, {{2}}: choose their columns in the preview, or name the columns 1, 2)'),
	    f.text,
	    el('label',
	       {for: 'u-region'
	       },
	       'Default region for numbers without a country code'),
	    f.region,
	    el('div', {class : 'actions'},
	       el('button', {type : 'button', id : 'u-preview', onclick : preview}, 'Preview'),
	       el('button', {type : 'submit', id : 'u-submit'}, 'Upload and validate')));
	f.file.addEventListener('change', () => {
		mapping = null; // a new file: its own columns
		put(prevBox);
	});
	form.addEventListener('submit', async (ev) => {
		ev.preventDefault();
		const fd = new FormData();
		common(fd);
		fd.set('name', f.name.value);
		fd.append('start', 'false');
		fd.append('file', f.file.files[0]);
		put(box, el('p', {class : 'muted'}, 'Uploading and validating…'));
		try {
			const b = await api('POST', '/v1/batches', fd);
			await report(box, b);
		} catch (e) {
			put(box, errorBox(e));
		}
	});
	put(main, el('h1', {id : 'u-h'}, 'New campaign'), form, prevBox, box);
}
