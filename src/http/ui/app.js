// zaiko internal search UI. Plain JS, no build step, no third-party code.
//
// The viewer token lives in sessionStorage (this tab only) and goes out only as an
// `Authorization` header; the address bar holds the search state, never the token.
// Everything the API returns is put into the page as text (textContent), never as HTML.
'use strict';

const TOKEN_KEY = 'zaiko.viewer_token';
const PAGE_SIZE = 50;
const DEBOUNCE_MS = 180;
const FACET_FIELDS = ['brand', 'category', 'color', 'size'];
const FACET_TITLES = { brand: 'Brand', category: 'Category', color: 'Color', size: 'Size', status: 'Status' };
const FACET_VISIBLE = 8;
const SKU_COLUMNS = 9;
const SHP_COLUMNS = 9;

const $ = (id) => document.getElementById(id);
const yen = new Intl.NumberFormat('ja-JP');
const count = new Intl.NumberFormat('en-US');
const when = new Intl.DateTimeFormat('ja-JP', { year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit' });

const state = {
  token: sessionStorage.getItem(TOKEN_KEY),
  tab: 'skus',
  brands: new Map(), // id -> name
  locations: new Map(), // id -> {name, kind}
  skus: {
    q: '', filters: {}, inStock: false, sort: 'relevance',
    hits: [], total: 0, facets: {}, cursor: null, seq: 0, ctrl: null, loaded: false,
    expanded: new Map(), // "brand/sku" -> detail row element
    facetOpen: new Set(),
  },
  shipments: {
    q: '', brand: '', status: '', from: '', to: '',
    hits: [], total: 0, cursor: null, seq: 0, ctrl: null, loaded: false,
    expanded: new Map(),
  },
};

// ---------------------------------------------------------------- DOM helpers

/** h('td', {class: 'num'}, 'text', childNode) — children are text or nodes, never HTML. */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const text = (v) => (v === null || v === undefined || v === '' ? '—' : String(v));
const price = (v) => (typeof v === 'number' ? '¥' + yen.format(v) : '—');
const qty = (v) => (typeof v === 'number' ? yen.format(v) : '—');
const brandName = (id) => state.brands.get(id) || id;
const locationName = (id) => (state.locations.get(id) || {}).name || id;

function date(v) {
  if (!v) return '—';
  const d = new Date(v);
  return Number.isNaN(d.getTime()) ? String(v) : when.format(d);
}

function debounce(fn, ms) {
  let timer = null;
  const wrapped = (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
  wrapped.now = (...args) => {
    clearTimeout(timer);
    fn(...args);
  };
  return wrapped;
}

// ---------------------------------------------------------------- API

class ApiError extends Error {
  constructor(status, problem, retryAfter) {
    const detail = (problem && (problem.detail || problem.title)) || `HTTP ${status}`;
    super(detail);
    this.status = status;
    this.problem = problem;
    this.retryAfter = retryAfter;
  }
}

async function api(path, signal) {
  let res;
  try {
    res = await fetch(path, {
      headers: { Authorization: `Bearer ${state.token}`, Accept: 'application/json, application/problem+json' },
      cache: 'no-store',
      credentials: 'omit',
      signal,
    });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, { detail: 'The server could not be reached. Is zaiko running?' });
  }
  const type = res.headers.get('content-type') || '';
  const body = type.includes('json') ? await res.json().catch(() => null) : null;
  if (!res.ok) throw new ApiError(res.status, body, res.headers.get('retry-after'));
  return body;
}

/** Shows an API failure plainly; a 401 means the token is gone: ask for it again. */
function report(err, where) {
  if (err && err.name === 'AbortError') return;
  if (err instanceof ApiError && err.status === 401) {
    signOut(`The token was not accepted: ${err.message}`);
    return;
  }
  let msg = err instanceof ApiError ? err.message : `Unexpected error: ${err && err.message}`;
  if (err instanceof ApiError && err.problem && Array.isArray(err.problem.errors) && err.problem.errors.length) {
    msg += ' — ' + err.problem.errors.map((e) => `${e.field}: ${e.detail}`).join('; ');
  }
  if (err instanceof ApiError && err.retryAfter) msg += ` (retry in ${err.retryAfter} s)`;
  if (where) {
    where.replaceChildren(h('p', { class: 'error', role: 'alert' }, msg));
  } else {
    showError(msg);
  }
}

function showError(msg) {
  const el = $('error');
  el.textContent = msg;
  el.hidden = !msg;
}

// ---------------------------------------------------------------- session

async function signIn(token) {
  state.token = token;
  try {
    const [brands, locations] = await Promise.all([api('/v1/brands'), api('/v1/locations')]);
    state.brands = new Map((brands.brands || []).map((b) => [b.id, b.name]));
    state.locations = new Map((locations.locations || []).map((l) => [l.id, l]));
  } catch (e) {
    state.token = null;
    if (e instanceof ApiError && e.status === 403) {
      return showLogin(`This token cannot read across brands (${e.message}). The search UI needs a viewer token.`);
    }
    if (e instanceof ApiError && e.status === 401) return showLogin(`The token was not accepted: ${e.message}`);
    return showLogin(e.message);
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  $('login').hidden = true;
  $('app').hidden = false;
  $('tabs').hidden = false;
  $('session-state').textContent = `Signed in · ${state.brands.size} brands`;
  $('forget-token').hidden = false;
  fillBrandSelect();
  showError('');
  selectTab(state.tab, false);
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  state.token = null;
  for (const s of [state.skus, state.shipments]) {
    if (s.ctrl) s.ctrl.abort();
    s.loaded = false;
  }
  showLogin(message);
}

function showLogin(message) {
  $('app').hidden = true;
  $('tabs').hidden = true;
  $('login').hidden = false;
  $('forget-token').hidden = true;
  $('session-state').textContent = '';
  const err = $('login-error');
  err.textContent = message || '';
  err.hidden = !message;
  const input = $('token-input');
  input.value = '';
  input.focus();
}

// ---------------------------------------------------------------- address bar (no token, ever)

function writeHash() {
  const p = new URLSearchParams();
  if (state.tab === 'skus') {
    const s = state.skus;
    if (s.q) p.set('q', s.q);
    for (const f of FACET_FIELDS) if (s.filters[f]) p.set(f, s.filters[f]);
    if (s.inStock) p.set('in_stock', 'true');
    if (s.sort !== 'relevance') p.set('sort', s.sort);
  } else {
    const s = state.shipments;
    for (const [k, v] of [['q', s.q], ['brand', s.brand], ['status', s.status], ['from', s.from], ['to', s.to]]) if (v) p.set(k, v);
  }
  const qs = p.toString();
  history.replaceState(null, '', `#${state.tab}${qs ? '?' + qs : ''}`);
}

function readHash() {
  const raw = location.hash.slice(1);
  const [tab, qs] = raw.split('?');
  const p = new URLSearchParams(qs || '');
  state.tab = tab === 'shipments' ? 'shipments' : 'skus';
  if (state.tab === 'skus') {
    const s = state.skus;
    s.q = p.get('q') || '';
    for (const f of FACET_FIELDS) if (p.get(f)) s.filters[f] = p.get(f);
    s.inStock = p.get('in_stock') === 'true';
    s.sort = p.get('sort') || 'relevance';
  } else {
    const s = state.shipments;
    s.q = p.get('q') || '';
    s.brand = p.get('brand') || '';
    s.status = p.get('status') || '';
    s.from = p.get('from') || '';
    s.to = p.get('to') || '';
  }
  $('sku-q').value = state.skus.q;
  $('sku-in-stock').checked = state.skus.inStock;
  $('sku-sort').value = state.skus.sort;
  $('shp-q').value = state.shipments.q;
  $('shp-status').value = state.shipments.status;
  $('shp-from').value = state.shipments.from;
  $('shp-to').value = state.shipments.to;
}

// ---------------------------------------------------------------- tabs

function selectTab(tab, focus = true) {
  state.tab = tab;
  for (const btn of document.querySelectorAll('[role=tab]')) {
    const on = btn.dataset.tab === tab;
    btn.setAttribute('aria-selected', String(on));
    btn.tabIndex = on ? 0 : -1;
  }
  $('panel-skus').hidden = tab !== 'skus';
  $('panel-shipments').hidden = tab !== 'shipments';
  showError('');
  writeHash();
  if (tab === 'skus' && !state.skus.loaded) skuSearch.now();
  if (tab === 'shipments' && !state.shipments.loaded) shpSearch.now();
  if (focus) searchInput().focus();
}

const searchInput = () => (state.tab === 'skus' ? $('sku-q') : $('shp-q'));

// ---------------------------------------------------------------- SKU search

function skuQuery(cursor) {
  const s = state.skus;
  const p = new URLSearchParams();
  if (s.q.trim()) p.set('q', s.q.trim());
  for (const f of FACET_FIELDS) if (s.filters[f]) p.set(f, s.filters[f]);
  if (s.inStock) p.set('in_stock', 'true');
  if (s.sort !== 'relevance') p.set('sort', s.sort);
  p.set('limit', String(PAGE_SIZE));
  if (cursor) p.set('cursor', cursor);
  return p;
}

async function runSkuSearch(append = false) {
  const s = state.skus;
  if (!state.token) return;
  if (s.ctrl) s.ctrl.abort();
  const ctrl = new AbortController();
  s.ctrl = ctrl;
  const seq = ++s.seq;
  writeHash();
  setBusy('sku', true);
  try {
    const data = await api(`/v1/search/skus?${skuQuery(append ? s.cursor : null)}`, ctrl.signal);
    if (seq !== s.seq) return;
    showError('');
    s.loaded = true;
    const hits = data.hits || [];
    if (append) {
      s.hits = s.hits.concat(hits);
      appendSkuRows(hits, s.hits.length - hits.length);
    } else {
      s.hits = hits;
      s.facets = data.facets || {};
      s.expanded.clear();
      renderSkuRows();
      renderFacets();
    }
    s.total = typeof data.total === 'number' ? data.total : s.hits.length;
    s.cursor = data.next_cursor || null;
    renderSkuSummary();
  } catch (e) {
    if (seq === s.seq && e.name !== 'AbortError') {
      report(e);
      $('sku-count').textContent = 'Search failed';
    }
  } finally {
    if (seq === s.seq) setBusy('sku', false);
  }
}

const skuSearch = debounce(() => runSkuSearch(false), DEBOUNCE_MS);

function setBusy(prefix, busy) {
  const table = $(`${prefix}-table`);
  table.classList.toggle('busy', busy);
  table.setAttribute('aria-busy', String(busy));
}

function renderSkuSummary() {
  const s = state.skus;
  $('sku-count').textContent =
    s.total === 0 ? 'No SKUs' : `${count.format(s.total)} SKU${s.total === 1 ? '' : 's'}` + (s.hits.length < s.total ? ` · showing ${count.format(s.hits.length)}` : '');
  const empty = $('sku-empty');
  empty.hidden = s.hits.length > 0;
  empty.textContent = s.q || Object.values(s.filters).some(Boolean) || s.inStock ? 'Nothing matches. Try fewer words or remove a filter.' : 'No SKUs yet.';
  $('sku-more').hidden = !s.cursor;
  renderChips();
}

function skuRow(hit, index) {
  const key = `${hit.brand}/${hit.sku}`;
  const available = typeof hit.available === 'number' ? hit.available : null;
  return h(
    'tr',
    { class: 'row', tabindex: '-1', dataset: { index: String(index), key }, 'aria-expanded': 'false' },
    h('td', { class: 'col-brand', title: hit.brand }, brandName(hit.brand)),
    h('td', { class: 'col-sku mono' }, hit.sku),
    h('td', { class: 'col-name' }, text(hit.name)),
    h('td', { class: 'col-color' }, text(hit.color)),
    h('td', { class: 'col-size' }, text(hit.size)),
    h('td', { class: 'col-category' }, text(hit.category)),
    h('td', { class: 'num' }, price(hit.price)),
    h('td', { class: 'num' }, qty(hit.on_hand)),
    h('td', { class: 'num' + (available === 0 ? ' zero' : '') }, qty(hit.available)),
  );
}

function renderSkuRows() {
  const body = $('sku-rows');
  body.replaceChildren(...state.skus.hits.map(skuRow));
  const first = body.querySelector('tr.row');
  if (first) first.tabIndex = 0;
}

function appendSkuRows(hits, offset) {
  const body = $('sku-rows');
  body.append(...hits.map((hit, i) => skuRow(hit, offset + i)));
}

// ---------------------------------------------------------------- facets and chips

function renderFacets() {
  const s = state.skus;
  const box = $('sku-facets');
  const groups = [];
  for (const field of FACET_FIELDS) {
    let values = Array.isArray(s.facets[field]) ? s.facets[field].slice() : [];
    const active = s.filters[field];
    if (active && !values.some((v) => v.value === active)) values.unshift({ value: active, count: null });
    if (!values.length) continue;
    const open = s.facetOpen.has(field);
    const shown = open ? values : values.slice(0, FACET_VISIBLE);
    const items = shown.map((v) => {
      const on = v.value === active;
      const label = field === 'brand' ? brandName(v.value) : v.value;
      return h(
        'li',
        null,
        h(
          'button',
          { type: 'button', class: 'facet', 'aria-pressed': String(on), dataset: { field, value: v.value }, title: field === 'brand' ? v.value : null },
          h('span', { class: 'facet-value', lang: 'ja' }, label),
          h('span', { class: 'facet-count' }, v.count === null ? '' : count.format(v.count)),
        ),
      );
    });
    const more =
      values.length > FACET_VISIBLE
        ? h('button', { type: 'button', class: 'link facet-more', dataset: { more: field } }, open ? 'Show fewer' : `Show all ${values.length}`)
        : null;
    groups.push(h('div', { class: 'facet-group' }, h('h2', null, FACET_TITLES[field]), h('ul', null, items), more));
  }
  box.replaceChildren(...(groups.length ? groups : [h('p', { class: 'muted' }, 'No filters for these results.')]));
}

function renderChips() {
  const s = state.skus;
  const chips = [];
  for (const field of FACET_FIELDS) {
    const v = s.filters[field];
    if (!v) continue;
    const label = field === 'brand' ? brandName(v) : v;
    chips.push(
      h(
        'li',
        null,
        h(
          'button',
          { type: 'button', class: 'chip', dataset: { chip: field }, 'aria-label': `Remove filter ${FACET_TITLES[field]}: ${label}` },
          h('span', { class: 'chip-field' }, FACET_TITLES[field]),
          h('span', { lang: 'ja' }, label),
          h('span', { class: 'chip-x', 'aria-hidden': 'true' }, '×'),
        ),
      ),
    );
  }
  if (s.inStock) {
    chips.push(
      h('li', null, h('button', { type: 'button', class: 'chip', dataset: { chip: 'in_stock' }, 'aria-label': 'Remove filter: in stock only' }, 'In stock only', h('span', { class: 'chip-x', 'aria-hidden': 'true' }, '×'))),
    );
  }
  if (chips.length > 1) chips.push(h('li', null, h('button', { type: 'button', class: 'link', dataset: { chip: '*' } }, 'Clear all')));
  $('sku-chips').replaceChildren(...chips);
}

function toggleFilter(field, value) {
  const s = state.skus;
  s.filters[field] = s.filters[field] === value ? undefined : value;
  skuSearch.now();
}

function removeChip(field) {
  const s = state.skus;
  if (field === '*') {
    s.filters = {};
    s.inStock = false;
  } else if (field === 'in_stock') {
    s.inStock = false;
  } else {
    s.filters[field] = undefined;
  }
  $('sku-in-stock').checked = s.inStock;
  skuSearch.now();
  $('sku-q').focus();
}

// ---------------------------------------------------------------- row expansion

function toggleRow(row) {
  const isSku = row.closest('tbody').id === 'sku-rows';
  const s = isSku ? state.skus : state.shipments;
  const key = row.dataset.key;
  const open = s.expanded.get(key);
  if (open) {
    open.remove();
    s.expanded.delete(key);
    row.setAttribute('aria-expanded', 'false');
    return;
  }
  const holder = h('div', { class: 'detail-body' }, h('p', { class: 'muted' }, 'Loading…'));
  const detail = h('tr', { class: 'detail' }, h('td', { colspan: String(isSku ? SKU_COLUMNS : SHP_COLUMNS) }, holder));
  row.after(detail);
  row.setAttribute('aria-expanded', 'true');
  s.expanded.set(key, detail);
  const hit = s.hits[Number(row.dataset.index)];
  (isSku ? loadStock(hit, holder) : loadShipment(hit, holder)).catch((e) => report(e, holder));
}

async function loadStock(hit, holder) {
  const stock = await api(`/v1/brands/${encodeURIComponent(hit.brand)}/skus/${encodeURIComponent(hit.sku)}/stock`);
  const cols = ['on_hand', 'reserved', 'safety_stock', 'available', 'incoming'];
  const heads = ['On hand', 'Reserved', 'Safety', 'Available', 'Incoming'];
  const hasIncoming = Object.values(stock.locations || {}).some((l) => typeof l.incoming === 'number');
  const use = hasIncoming ? cols : cols.slice(0, 4);
  const line = (label, l, cls) =>
    h('tr', { class: cls }, h('th', { scope: 'row' }, label), use.map((c) => h('td', { class: 'num' + (c === 'available' && l[c] === 0 ? ' zero' : '') }, qty(l[c]))));
  const rows = Object.entries(stock.locations || {}).map(([loc, l]) => {
    const info = state.locations.get(loc);
    return line(h('span', null, locationName(loc), info ? h('span', { class: 'muted' }, ` ${loc} · ${info.kind}`) : null), l);
  });
  const table = h(
    'table',
    { class: 'stock' },
    h('caption', null, `Stock by location · version ${text(stock.version)}`),
    h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'Location'), use.map((c) => h('th', { scope: 'col', class: 'num' }, heads[cols.indexOf(c)])))),
    h('tbody', null, rows.length ? rows : h('tr', null, h('td', { colspan: String(use.length + 1), class: 'muted' }, 'Not stocked at any location.'))),
    stock.total ? h('tfoot', null, line('Total', stock.total, 'total')) : null,
  );
  const extras = [];
  if (hit.product_id) extras.push(h('div', null, h('dt', null, 'Product'), h('dd', { class: 'mono' }, hit.product_id)));
  if (stock.channels && Object.keys(stock.channels).length) {
    const parts = Object.entries(stock.channels).map(([c, v]) => `${c} ${qty(v.available)}`);
    extras.push(h('div', null, h('dt', null, 'Channels (available)'), h('dd', null, parts.join(' · '))));
  }
  holder.replaceChildren(table, extras.length ? h('dl', { class: 'facts' }, extras) : '');
}

async function loadShipment(hit, holder) {
  const shp = await api(`/v1/brands/${encodeURIComponent(hit.brand)}/shipments/${encodeURIComponent(hit.id)}`);
  // The shipment carries the recipient's address: it is never shown here (staff
  // search needs ids and status, not personal data), so it is dropped at once.
  delete shp.ship_to;
  const lines = (shp.lines || []).map((l) =>
    h('tr', null, h('td', { class: 'mono' }, l.sku), h('td', null, l.location ? locationName(l.location) : '—'), h('td', { class: 'num' }, qty(l.quantity))),
  );
  const history = (shp.history || shp.status_history || []).map((e) =>
    h('li', null, h('span', { class: `status status-${e.status}` }, e.status), ' ', h('time', { datetime: e.at || '' }, date(e.at))),
  );
  holder.replaceChildren(
    h(
      'div',
      { class: 'split' },
      h(
        'table',
        { class: 'stock' },
        h('caption', null, 'Lines'),
        h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'SKU'), h('th', { scope: 'col' }, 'Location'), h('th', { scope: 'col', class: 'num' }, 'Qty'))),
        h('tbody', null, lines),
      ),
      h('div', null, h('h3', null, 'Status history'), history.length ? h('ol', { class: 'history' }, history) : h('p', { class: 'muted' }, '—')),
    ),
  );
}

// ---------------------------------------------------------------- shipments

function fillBrandSelect() {
  const sel = $('shp-brand');
  const keep = state.shipments.brand;
  sel.replaceChildren(
    h('option', { value: '' }, 'All brands'),
    [...state.brands].sort((a, b) => a[0].localeCompare(b[0])).map(([id, name]) => h('option', { value: id }, `${name} (${id})`)),
  );
  sel.value = keep;
}

/** A date input's day, as the RFC 3339 instant of local midnight (end: the next midnight). */
function dayBound(day, end) {
  const [y, m, d] = day.split('-').map(Number);
  return new Date(y, m - 1, d + (end ? 1 : 0)).toISOString();
}

async function runShipmentSearch(append = false) {
  const s = state.shipments;
  if (!state.token) return;
  if (s.ctrl) s.ctrl.abort();
  const ctrl = new AbortController();
  s.ctrl = ctrl;
  const seq = ++s.seq;
  writeHash();
  const p = new URLSearchParams();
  if (s.q.trim()) p.set('q', s.q.trim());
  if (s.brand) p.set('brand', s.brand);
  if (s.status) p.set('status', s.status);
  if (s.from) p.set('created_from', dayBound(s.from, false));
  if (s.to) p.set('created_to', dayBound(s.to, true));
  p.set('limit', String(PAGE_SIZE));
  if (append && s.cursor) p.set('cursor', s.cursor);
  setBusy('shp', true);
  try {
    const data = await api(`/v1/search/shipments?${p}`, ctrl.signal);
    if (seq !== s.seq) return;
    showError('');
    s.loaded = true;
    const hits = data.hits || [];
    const body = $('shp-rows');
    if (append) {
      body.append(...hits.map((hit, i) => shipmentRow(hit, s.hits.length + i)));
      s.hits = s.hits.concat(hits);
    } else {
      s.hits = hits;
      s.expanded.clear();
      body.replaceChildren(...hits.map(shipmentRow));
      const first = body.querySelector('tr.row');
      if (first) first.tabIndex = 0;
    }
    s.total = typeof data.total === 'number' ? data.total : s.hits.length;
    s.cursor = data.next_cursor || null;
    if (!append) showFacetCounts(data.facets || {});
    $('shp-count').textContent =
      s.total === 0 ? 'No shipments' : `${count.format(s.total)} shipment${s.total === 1 ? '' : 's'}` + (s.hits.length < s.total ? ` · showing ${count.format(s.hits.length)}` : '');
    $('shp-empty').hidden = s.hits.length > 0;
    $('shp-empty').textContent = 'Nothing matches.';
    $('shp-more').hidden = !s.cursor;
  } catch (e) {
    if (seq === s.seq && e.name !== 'AbortError') {
      report(e);
      $('shp-count').textContent = 'Search failed';
    }
  } finally {
    if (seq === s.seq) setBusy('shp', false);
  }
}

/** Shows the shipment facets' counts in the brand and status pickers ("delivered · 148"). */
function showFacetCounts(facets) {
  for (const [id, field] of [['shp-brand', 'brand'], ['shp-status', 'status']]) {
    const counts = new Map((facets[field] || []).map((v) => [v.value, v.count]));
    for (const opt of $(id).options) {
      if (!opt.value) continue;
      opt.dataset.label = opt.dataset.label || opt.textContent;
      const n = counts.get(opt.value);
      opt.textContent = n === undefined ? opt.dataset.label : `${opt.dataset.label} · ${count.format(n)}`;
    }
  }
}

const shpSearch = debounce(() => runShipmentSearch(false), DEBOUNCE_MS);

function shipmentSkus(hit) {
  if (Array.isArray(hit.skus)) return hit.skus;
  if (Array.isArray(hit.lines)) return hit.lines.map((l) => l.sku);
  return [];
}

function shipmentRow(hit, index) {
  // Only the columns below are read from the hit; `ship_to` is never rendered.
  const skus = shipmentSkus(hit);
  return h(
    'tr',
    { class: 'row', tabindex: '-1', dataset: { index: String(index), key: `${hit.brand}/${hit.id}` }, 'aria-expanded': 'false' },
    h('td', { class: 'mono' }, hit.id),
    h('td', { class: 'mono' }, text(hit.order_ref)),
    h('td', { class: 'col-brand', title: hit.brand }, brandName(hit.brand)),
    h('td', null, h('span', { class: `status status-${hit.status}` }, text(hit.status))),
    h('td', { class: 'mono' }, text(hit.tracking_number)),
    h('td', null, text(hit.carrier)),
    h('td', { class: 'mono skus', title: skus.join(', ') }, skus.length ? skus.slice(0, 3).join(', ') + (skus.length > 3 ? ` +${skus.length - 3}` : '') : '—'),
    h('td', { class: 'nowrap' }, date(hit.created_at)),
    h('td', { class: 'nowrap' }, date(hit.updated_at)),
  );
}

// ---------------------------------------------------------------- keyboard

function rowsOf(tbody) {
  return [...tbody.querySelectorAll('tr.row')];
}

function focusRow(row) {
  if (!row) return;
  for (const r of row.parentElement.querySelectorAll('tr.row[tabindex="0"]')) r.tabIndex = -1;
  row.tabIndex = 0;
  row.focus();
  row.scrollIntoView({ block: 'nearest' });
}

function onTableKey(e) {
  const row = e.target.closest('tr.row');
  if (!row) return;
  const rows = rowsOf(row.parentElement);
  const i = rows.indexOf(row);
  switch (e.key) {
    case 'ArrowDown':
      e.preventDefault();
      if (i + 1 < rows.length) focusRow(rows[i + 1]);
      else if (!(state.tab === 'skus' ? $('sku-more') : $('shp-more')).hidden) (state.tab === 'skus' ? $('sku-more') : $('shp-more')).focus();
      break;
    case 'ArrowUp':
      e.preventDefault();
      if (i > 0) focusRow(rows[i - 1]);
      else searchInput().focus();
      break;
    case 'Home':
      e.preventDefault();
      focusRow(rows[0]);
      break;
    case 'End':
      e.preventDefault();
      focusRow(rows[rows.length - 1]);
      break;
    case 'Enter':
    case ' ':
      e.preventDefault();
      toggleRow(row);
      break;
    case 'Escape':
      e.preventDefault();
      if (row.getAttribute('aria-expanded') === 'true') toggleRow(row);
      else searchInput().focus();
      break;
    default:
  }
}

function onSearchKey(e) {
  const tbody = state.tab === 'skus' ? $('sku-rows') : $('shp-rows');
  if (e.key === 'ArrowDown') {
    e.preventDefault();
    focusRow(rowsOf(tbody)[0]);
  } else if (e.key === 'Enter') {
    e.preventDefault();
    (state.tab === 'skus' ? skuSearch : shpSearch).now();
  } else if (e.key === 'Escape' && e.target.value) {
    e.preventDefault();
    e.target.value = '';
    e.target.dispatchEvent(new Event('input'));
  }
}

function onGlobalKey(e) {
  if ($('app').hidden) return;
  const t = e.target;
  const typing = t instanceof HTMLInputElement || t instanceof HTMLSelectElement || t instanceof HTMLTextAreaElement;
  if (e.key === '/' && !typing && !e.ctrlKey && !e.metaKey && !e.altKey) {
    e.preventDefault();
    searchInput().focus();
    searchInput().select();
  } else if (e.key === 'Escape' && !typing && !t.closest('tr.row')) {
    searchInput().focus();
  }
}

function onTabKey(e) {
  if (e.key !== 'ArrowLeft' && e.key !== 'ArrowRight') return;
  e.preventDefault();
  const next = state.tab === 'skus' ? 'shipments' : 'skus';
  selectTab(next, false);
  document.getElementById(`tab-${next}`).focus();
}

// ---------------------------------------------------------------- wiring

function wire() {
  // On a narrow screen the filters start folded, so the results come first.
  if (window.matchMedia('(max-width: 800px)').matches) $('sku-facets-box').open = false;
  $('login-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const token = $('token-input').value.trim();
    if (token) signIn(token);
  });
  $('forget-token').addEventListener('click', () => signOut(''));
  for (const btn of document.querySelectorAll('[role=tab]')) {
    btn.addEventListener('click', () => selectTab(btn.dataset.tab));
    btn.addEventListener('keydown', onTabKey);
  }
  document.addEventListener('keydown', onGlobalKey);

  $('sku-q').addEventListener('input', (e) => {
    state.skus.q = e.target.value;
    skuSearch();
  });
  $('sku-q').addEventListener('keydown', onSearchKey);
  $('sku-in-stock').addEventListener('change', (e) => {
    state.skus.inStock = e.target.checked;
    skuSearch.now();
  });
  $('sku-sort').addEventListener('change', (e) => {
    state.skus.sort = e.target.value;
    skuSearch.now();
  });
  $('sku-facets').addEventListener('click', (e) => {
    const btn = e.target.closest('button');
    if (!btn) return;
    if (btn.dataset.more) {
      const f = btn.dataset.more;
      if (state.skus.facetOpen.has(f)) state.skus.facetOpen.delete(f);
      else state.skus.facetOpen.add(f);
      renderFacets();
    } else if (btn.dataset.field) {
      toggleFilter(btn.dataset.field, btn.dataset.value);
    }
  });
  $('sku-chips').addEventListener('click', (e) => {
    const btn = e.target.closest('button[data-chip]');
    if (btn) removeChip(btn.dataset.chip);
  });
  $('sku-more').addEventListener('click', () => runSkuSearch(true));

  $('shp-q').addEventListener('input', (e) => {
    state.shipments.q = e.target.value;
    shpSearch();
  });
  $('shp-q').addEventListener('keydown', onSearchKey);
  for (const [id, field] of [['shp-brand', 'brand'], ['shp-status', 'status'], ['shp-from', 'from'], ['shp-to', 'to']]) {
    $(id).addEventListener('change', (e) => {
      state.shipments[field] = e.target.value;
      shpSearch.now();
    });
  }
  $('shp-more').addEventListener('click', () => runShipmentSearch(true));

  for (const id of ['sku-rows', 'shp-rows']) {
    const body = $(id);
    body.addEventListener('click', (e) => {
      const row = e.target.closest('tr.row');
      // Selecting text (to copy a SKU or a tracking number) is not a click on the row.
      if (row && !String(window.getSelection() || '')) {
        focusRow(row);
        toggleRow(row);
      }
    });
    body.addEventListener('keydown', onTableKey);
  }
}

wire();
readHash();
if (state.token) signIn(state.token);
else showLogin('');
