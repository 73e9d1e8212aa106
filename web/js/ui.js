// ui.js - small DOM helpers: elements built with textContent only (never
// innerHTML: every value shown may come from a tenant's upload), times in
// UTC or local, status badges, the hash's query.

export function el(tag, attrs, ...children)
{
	const e = document.createElement(tag);
	for (const [k, v] of Object.entries(attrs || {})) {
		if (v === undefined || v === null || v === false)
			continue;
		if (k.startsWith('on'))
			e.addEventListener(k.slice(2), v);
		else if (k === 'class')
			e.className = v;
		else
			e.setAttribute(k, v === true ? '' : v);
	}
	for (const c of children.flat()) {
		if (c === undefined || c === null || c === false)
			continue;
		e.append(c instanceof Node ? c : document.createTextNode(String(c)));
	}
	return e;
}

// replaceChildren without the holes (a null child would show as "null").
export function put(parent, ...kids)
{
	parent.replaceChildren(
	    ...kids.flat(2).filter((k) => k !== null && k !== undefined && k !== false));
}

// UTC or local time: the URL's tz= (utc|local) when it has one, so a
// shared link shows times as its sender saw them; else the last choice.
export function utc()
{
	const tz = route().params.get('tz');
	if (tz === 'utc' || tz === 'local')
		return tz === 'utc';
	return localStorage.getItem('herald.utc') === '1';
}

// a time range kept in the URL (since=, until= as RFC 3339 UTC),
// entered in UTC or local time by the tz switch. Returns the inputs and
// a function that writes their values into a URLSearchParams.
function toInput(iso)
{
	if (!iso)
		return '';
	const d = new Date(iso);
	if (isNaN(d))
		return '';
	const local = new Date(utc() ? d.getTime() : d.getTime() - d.getTimezoneOffset() * 60000);
	return local.toISOString().slice(0, 16);
}

function fromInput(v)
{
	if (!v)
		return '';
	const d = new Date(utc() ? `${v}:00Z` : v);
	return isNaN(d) ? '' : d.toISOString().replace(/\.\d+Z$/, 'Z');
}

export function timeRange(params, prefix)
{
	const since = el('input', {
		id : `${prefix}-since`,
		type : 'datetime-local',
		value : toInput(params.get('since'))
	});
	const until = el('input', {
		id : `${prefix}-until`,
		type : 'datetime-local',
		value : toInput(params.get('until'))
	});
	const zone = utc() ? 'UTC' : 'local';
	const fields = [
		el('label', {for: `${prefix}-since`}, `From (${zone})`), since,
		el('label', {for: `${prefix}-until`}, `To (${zone})`), until
	];
	const write = (p) => {
		const a = fromInput(since.value), b = fromInput(until.value);
		if (a)
			p.set('since', a);
		if (b)
			p.set('until', b);
		const tz = route().params.get('tz');
		if (tz)
			p.set('tz', tz);
	};
	return {fields, write};
}

export function fmtTime(iso)
{
	if (!iso)
		return '—';
	const d = new Date(iso);
	if (isNaN(d))
		return iso;
	if (utc())
		return d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC');
	return d.toLocaleString();
}

export function fmtNum(n)
{
	return (n ?? 0).toLocaleString('en-US');
}

export function badge(status)
{
	return el('span', {class : `badge s-${status}`}, status);
}

// The hash route: "#/campaigns?status=processing" -> {path, params}.
export function route()
{
	const h = location.hash.replace(/^#/, '') || '/overview';
	const [path, q] = h.split('?');
	return {path, params : new URLSearchParams(q || '')};
}

export function go(path, params)
{
	const q = params && [...params ].length ? `?${params}` : '';
	location.hash = `#${path}${q}`;
}

export function toast(msg, bad)
{
	const t = document.getElementById('toast');
	t.textContent = msg;
	t.className = bad ? 'show bad' : 'show';
	clearTimeout(toast.timer);
	toast.timer = setTimeout(() => { t.className = ''; }, 5000);
}

export function table(headers, rows, caption)
{
	return el('table', {}, caption ? el('caption', {}, caption) : null,
	          el('thead', {}, el('tr', {}, headers.map((h) => el('th', {scope : 'col'}, h)))),
	          el('tbody', {}, rows));
}

export function errorBox(e)
{
	return el('p', {class : 'error', role : 'alert'},
	          e.field ? `${e.message} (${e.field})` : e.message);
}

// A campaign's settled share of its valid rows, 0..1.
export function progressOf(b)
{
	const valid = b.rows ? b.rows.valid : 0;
	const settled = b.progress ? b.progress.settled : 0;
	return valid > 0 ? Math.min(1, settled / valid) : 0;
}

export function progressBar(b)
{
	const p = progressOf(b);
	const pct = Math.round(p * 100);
	return el('progress',
	          {max : '100', value : String(pct), 'aria-label' : `${b.name}: ${pct}% settled`},
		  `${pct}%`);
}
