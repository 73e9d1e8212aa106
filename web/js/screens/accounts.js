// accounts.js - #/accounts: the tenant's sender accounts: configured rate
// and policy, webhook URL, and how their latest messages fared.
import {api} from '../api.js';
import {el, put, fmtTime, table, badge} from '../ui.js';

export async function accounts(main)
{
	const [acc, recent] = await Promise.all([
		api('GET', '/v1/channels'),
		api('GET', '/v1/messages?limit=200').catch(() => ({data : []}))
	]);
	const stats = new Map();
	for (const m of recent.data) {
		const s = stats.get(m.account) || {n : 0, failed : 0, last : null};
		s.n++;
		if (m.status === 'failed' || m.status === 'undelivered')
			s.failed++;
		else if (!s.last && [ 'sent', 'delivered', 'read' ].includes(m.status))
			s.last = m.updated_at;
		stats.set(m.account, s);
	}
	put(main, el('h1', {}, 'Sender accounts'),
	    table(
	        [
		        'Account', 'Channel', 'Configured rate', 'Policy', 'Recent error rate',
		        'Last success', 'Webhook URL'
	        ],
	        acc.data.map((a) => {
		        const s = stats.get(a.id) || {n : 0, failed : 0, last : null};
		        const rate = s.n ? `${Math.round((100 * s.failed) / s.n)}% of ${s.n}` : '—';
		        return el('tr', {}, el('td', {}, a.id), el('td', {}, a.channel),
		                  el('td', {class : 'num'}, `${a.rate_limit}/s`),
			          el('td', {}, a.delivery_policy),
			          el('td', {}, s.failed ? badge('failed') : null, ' ', rate),
			          el('td', {}, fmtTime(s.last)),
			          el('td', {}, el('code', {}, a.webhook_url || '—')));
	        }),
	        'Accounts (error rate over the latest 200 messages)'));
}
