// api.js - the dashboard's only way to the server: the /v1 API with the
// session cookie (sent by the browser, HttpOnly) and, on every change, the
// session's CSRF token, which lives in memory only.

let csrf = null;
let session = null;

export class ApiError extends Error
{
	constructor(status, body)
	{
		const e = (body && body.error) || {};
		super(e.message || `HTTP ${status}`);
		this.status = status;
		this.code = e.code || '';
		this.field = e.field || '';
	}
}

export function currentSession()
{
	return session;
}

export function setSession(s)
{
	session = s;
	csrf = s ? s.csrf_token : null;
}

// fetch with JSON in and out; body may be an object (JSON) or FormData.
export async function api(method, path, body)
{
	const headers = {Accept : 'application/json'};
	const init = {method, headers, credentials : 'same-origin', cache : 'no-store'};
	if (method !== 'GET' && method !== 'HEAD' && csrf)
		headers['X-CSRF-Token'] = csrf;
	if (body instanceof FormData) {
		init.body = body;
	} else if (body !== undefined) {
		headers['Content-Type'] = 'application/json';
		init.body = JSON.stringify(body);
	}
	const res = await fetch(path, init);
	if (res.status === 204)
		return null;
	const text = await res.text();
	let data = null;
	try {
		data = text ? JSON.parse(text) : null;
	} catch (e) {
		data = null;
	}
	if (!res.ok) {
		if (res.status === 401 && path !== '/v1/session') {
			setSession(null);
			window.dispatchEvent(new CustomEvent('herald:signedout'));
		}
		throw new ApiError(res.status, data);
	}
	return data;
}

export async function signIn(apiKey)
{
	const s = await api('POST', '/v1/session', {api_key : apiKey});
	setSession(s);
	return s;
}

// a configured login (dashboard.users) instead of a key.
export async function signInUser(name, password)
{
	const s = await api('POST', '/v1/session', {name, password});
	setSession(s);
	return s;
}

export async function loadSession()
{
	try {
		setSession(await api('GET', '/v1/session'));
	} catch (e) {
		setSession(null);
	}
	return session;
}

export async function signOut()
{
	try {
		await api('DELETE', '/v1/session');
	} finally {
		setSession(null);
	}
}

export function hasScope(s)
{
	return !!session && session.scopes.includes(s);
}

// The live feed (GET /v1/events): one EventSource per screen that needs it.
export function liveCampaigns(onData, batch)
{
	if (!hasScope('campaigns:read'))
		return {close() {}}; // the stream would be refused (403)
	const es =
	    new EventSource(batch ? `/v1/events?batch=${encodeURIComponent(batch)}` : '/v1/events');
	es.addEventListener('campaigns', (ev) => onData(JSON.parse(ev.data).data));
	return es;
}
