// app.js - the dashboard's entry point: the session, the header, and the
// hash router (every screen deep-linkable: its filters live in the hash's
// query, e.g. #/campaigns?status=processing).
import {api, loadSession, signIn, signInUser, signOut, currentSession} from './api.js';
import {el, put, route, go, toast, errorBox, utc} from './ui.js';
import {overview} from './screens/overview.js';
import {campaigns} from './screens/campaigns.js';
import {campaign} from './screens/campaign.js';
import {upload} from './screens/upload.js';
import {messages} from './screens/messages.js';
import {message} from './screens/message.js';
import {suppressions} from './screens/suppressions.js';
import {accounts} from './screens/accounts.js';
import {recipient} from './screens/recipient.js';

const screens = {
	'/overview' : overview,
	'/campaigns' : campaigns,
	'/campaign' : campaign,
	'/upload' : upload,
	'/messages' : messages,
	'/message' : message,
	'/suppressions' : suppressions,
	'/accounts' : accounts,
	'/recipient' : recipient,
};

let cleanup = null; // the current screen's (closes its event stream)

function signinScreen(main)
{
	const key =
	    el('input', {id : 'apikey', type : 'password', autocomplete : 'off', required : true});
	const msg = el('div');
	const form = el(
	    'form', {class : 'signin', 'aria-labelledby' : 'signin-h'},
	    el('h1', {id : 'signin-h'}, 'Sign in to Herald'),
	    el('label',
	       {for: 'apikey'
	       },
	       'API key'),
	    key,
	    el('p', {class : 'muted'}, 'The session carries this key\'s tenant, unit and scopes.'),
	    el('button', {type : 'submit'}, 'Sign in'), msg);
	const done = () => {
		header();
		const r = route();
		if (r.path === '/signin')
			go('/overview');
		else
			render();
	};
	form.addEventListener('submit', async (ev) => {
		ev.preventDefault();
		put(msg);
		try {
			await signIn(key.value);
			key.value = '';
			done();
		} catch (e) {
			put(msg, errorBox(e));
		}
	});
	// or a configured login (dashboard.users).
	const user = el('input', {id : 'username', autocomplete : 'username', required : true});
	const pass = el('input',
	                {id : 'password', type : 'password', autocomplete : 'current-password', required : true});
	const umsg = el('div');
	const uform = el('form', {class : 'signin', 'aria-labelledby' : 'signin-u'},
	                 el('h2', {id : 'signin-u'}, 'Or with your name'),
	                 el('label', {for: 'username'}, 'Name'), user,
	                 el('label', {for: 'password'}, 'Password'), pass,
	                 el('button', {type : 'submit', id : 'signin-user'}, 'Sign in'), umsg);
	uform.addEventListener('submit', async (ev) => {
		ev.preventDefault();
		put(umsg);
		try {
			await signInUser(user.value, pass.value);
			pass.value = '';
			done();
		} catch (e) {
			pass.value = '';
			put(umsg, errorBox(e));
		}
	});
	put(main, form, uform);
	key.focus();
}

function header()
{
	const s = currentSession();
	const top = document.getElementById('top');
	top.hidden = !s;
	if (!s)
		return;
	const who = document.getElementById('who');
	put(who, el('span', {}, `${s.tenant}${s.unit ? ' / ' + s.unit : ''}`), ' ',
	    el('span', {class : 'muted'}, s.masked ? 'numbers masked' : 'numbers shown'));
	if (s.masked) {
		who.append(' ', el('button', {type : 'button', class : 'link', onclick : unmask},
		                   'Unmask…'));
	}
	// a tenant-wide session may view one unit at a time.
	if (s.units && s.units.length) {
		const sel = el('select', {id : 'unit-view', 'aria-label' : 'Unit'},
		               el('option', {value : ''}, 'All units'),
		               s.units.map((u) => el('option', {value : u.id, selected : s.unit_view && s.unit === u.id},
		                                     u.name || u.id)));
		sel.addEventListener('change', async () => {
			try {
				await api('POST', '/v1/session/view', {unit : sel.value || null});
				await loadSession();
				header();
				render();
			} catch (e) {
				toast(e.message, true);
			}
		});
		who.append(' ', sel);
	}
	// a login of several tenants (platform, on-call) switches
	// tenant here; shown only when there is more than one.
	if (s.tenant_switch && s.tenants && s.tenants.length > 1) {
		const tsel = el('select', {id : 'tenant-switch', 'aria-label' : 'Tenant'},
		                s.tenants.map((t) => el('option', {value : t.id, selected : t.id === s.tenant},
		                                        t.name && t.name.toLowerCase() !== t.id.toLowerCase() ? `${t.name} (${t.id})` : t.name || t.id)));
		tsel.addEventListener('change', () => switchTenant(tsel.value));
		who.prepend(tsel, ' ');
	}
}

// the session moves to another tenant; the current screen is drawn
// again under it (an object's own screen, which the new tenant does not
// have, gives way to its list).
const PARENT = {'/campaign' : '/campaigns', '/message' : '/messages', '/recipient' : '/messages'};
async function switchTenant(tenant)
{
	try {
		await api('POST', '/v1/session/tenant', {tenant});
		await loadSession();
	} catch (e) {
		toast(e.message, true);
		await loadSession();
	}
	header();
	const s = currentSession();
	if (s)
		toast(`Now in ${s.tenant}.`);
	const r = route();
	const base = `/${r.path.split('/').filter(Boolean)[0] || 'overview'}`;
	if (PARENT[base]) {
		const keep = new URLSearchParams();
		if (r.params.get('tz'))
			keep.set('tz', r.params.get('tz'));
		go(PARENT[base], keep); // hashchange renders
		return;
	}
	render();
}

async function unmask()
{
	const reason =
	    window.prompt('Why do you need the phone numbers? (recorded in the audit log)');
	if (!reason)
		return;
	try {
		await api('POST', '/v1/session/unmask', {reason});
		await loadSession();
		header();
		render();
		toast('Numbers shown for 15 minutes; recorded in the audit log.');
	} catch (e) {
		toast(e.message, true);
	}
}

function navCurrent(path)
{
	for (const a of document.querySelectorAll('nav a')) {
		const on = a.getAttribute('href') === `#${path}` ||
			   (path === '/campaign' && a.getAttribute('href') === '#/campaigns') ||
			   ((path === '/message' || path === '/recipient') &&
			    a.getAttribute('href') === '#/messages');
		if (on)
			a.setAttribute('aria-current', 'page');
		else
			a.removeAttribute('aria-current');
	}
}

let renders = 0; /* render() calls so far: the newest owns #main */

async function render()
{
	if (cleanup) {
		cleanup();
		cleanup = null;
	}
	const gen = ++renders;
	const main = document.getElementById('main');
	const r = route();
	if (!currentSession()) {
		signinScreen(main);
		return;
	}
	const parts = r.path.split('/').filter(Boolean); // "/campaign/<id>"
	const base = `/${parts[0] || 'overview'}`;
	const screen = screens[base];
	navCurrent(base);
	if (!screen) {
		put(main, el('h1', {}, 'Not found'), el('p', {}, 'No such screen.'));
		return;
	}
	// Each render draws into a box of its own: one still loading when the
	// hash changes again (a screen awaits the API) draws into a box no
	// longer shown, instead of over the newer screen, and its cleanup runs
	// at once (its timers and event streams stop).
	const box = el('div', {class : 'screen'});
	put(main, box);
	put(box, el('p', {class : 'muted'}, 'Loading…'));
	let done = null;
	try {
		done = (await screen(box, parts.slice(1).map(decodeURIComponent), r.params)) || null;
	} catch (e) {
		put(box, el('h1', {}, 'Something went wrong'), errorBox(e));
	}
	if (gen !== renders) {
		if (done)
			done();
		return;
	}
	cleanup = done;
}

async function start()
{
	const box = document.getElementById('utc');
	box.checked = utc();
	box.addEventListener('change', () => {
		localStorage.setItem('herald.utc', box.checked ? '1' : '0');
		// kept in the URL too (tz=), so the link shows the same.
		const r = route();
		r.params.set('tz', box.checked ? 'utc' : 'local');
		go(r.path, r.params); // hashchange renders
	});
	window.addEventListener('hashchange', () => { box.checked = utc(); });
	document.getElementById('signout').addEventListener('click', async () => {
		await signOut();
		header();
		go('/signin');
		render();
	});
	window.addEventListener('herald:signedout', () => {
		header();
		render();
	});
	window.addEventListener('hashchange', render);
	await loadSession();
	header();
	render();
}

start();
