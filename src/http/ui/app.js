// zaiko internal search UI. Plain JS, no build step, no third-party code.
//
// The viewer token lives in sessionStorage (this tab only) and goes out only as an
// `Authorization` header; the address bar holds the search state, never the token.
// Everything the API returns is put into the page as text (textContent), never as HTML.
//
// Language: Japanese by default, English when the browser prefers English; the ja/en
// switch in the header is remembered in localStorage. Dates and numbers follow the
// chosen language's locale (Intl). Codes are shown by name where the API has one:
// brands, locations and channels from their routes, colours and categories from
// `GET /v1/search/labels` (the raw code when the route or the code is missing).
'use strict';

const TOKEN_KEY = 'zaiko.viewer_token';
const LANG_KEY = 'zaiko.lang';
const PAGE_SIZE = 50;
const DEBOUNCE_MS = 180;
const FACET_FIELDS = ['brand', 'category', 'color', 'size'];
const FACET_VISIBLE = 8;
const SHP_COLUMNS = 9;
/** Changes of a SKU's history shown per page of its detail. */
const HISTORY_PAGE = 20;
/** Newest changes scanned for the reservations that may still hold a SKU. */
const HOLDS_SCAN = 200;
/** Reservations looked up per SKU detail, at most. */
const HOLDS_MAX = 10;
/** Brands whose channels are loaded for the channel filter, at most. */
const CHANNEL_BRANDS_MAX = 50;
/** Shipment statuses that still hold stock. */
const HOLDING_STATUSES = ['accepted', 'picking', 'packed'];

const MESSAGES = {
  ja: {
    tagline: '在庫検索', tabs_label: '検索対象', tab_skus: 'SKU', tab_shipments: '出荷', language: '表示言語',
    forget_token: 'トークンを消去', login_title: '閲覧トークン',
    login_help: '閲覧用トークン（zk_…）を貼り付けてください。管理者が下の API で発行します。トークンはこのタブ（sessionStorage）にだけ保存され、アドレスバーには入りません。',
    token: 'トークン', use_token: 'このトークンを使う',
    search_skus: 'SKUを検索', sku_placeholder: '商品名・SKU・商品ID・ブランド・タグで検索…（ / ）',
    location: '拠点', all_locations: 'すべての拠点', channel: 'チャネル', all_channels: 'すべてのチャネル',
    in_stock_only: '在庫ありのみ', group_by_product: '商品ごとにまとめる', group_unavailable: 'このサーバーは商品ごとのまとめに未対応です',
    sort: '並び順', sort_relevance: '関連度', sort_updated: '更新が新しい順', sort_available: '販売可能数が多い順',
    sort_price_asc: '価格が安い順', sort_price_desc: '価格が高い順', filters: '絞り込み', active_filters: '適用中の絞り込み',
    more_results: 'さらに表示', search_shipments: '出荷を検索', shp_placeholder: '出荷ID・注文番号・追跡番号・SKUで検索…（ / ）',
    brand: 'ブランド', all_brands: 'すべてのブランド', status: 'ステータス', any_status: 'すべて',
    status_accepted: '受付', status_picking: 'ピッキング中', status_packed: '梱包済み', status_shipped: '出荷済み',
    status_delivered: '配達済み', status_cancelled: 'キャンセル', status_active: '引当中', status_consumed: '出荷に使用',
    status_released: '解除済み', status_expired: '期限切れ',
    from: '開始日', to: '終了日', day_placeholder: 'YYYY/MM/DD', bad_day: (v) => `日付「${v.value}」が読めません。YYYY/MM/DD で入力してください`,
    shipment: '出荷ID', order_ref: '注文番号', tracking_number: '追跡番号', carrier: '配送業者', skus: 'SKU', created: '作成', updated: '更新',
    key_search: '検索', key_move: '移動', key_open: '詳細', key_close: '閉じる／消去',
    col_brand: 'ブランド', col_sku: 'SKU', col_name: '商品名', col_color: 'カラー', col_size: 'サイズ', col_category: 'カテゴリ',
    col_price: '価格', col_on_hand: '在庫数', col_available: '販売可能', col_channel_available: (v) => `販売可能（${v.channel}）`,
    col_unsellable: '販売不可', col_in_transit: '移動中',
    col_location_available: (v) => `販売可能（${v.location}で在庫あり）`,
    facet_brand: 'ブランド', facet_category: 'カテゴリ', facet_color: 'カラー', facet_size: 'サイズ',
    facet_location: '拠点', facet_channel: 'チャネル',
    show_fewer: '少なく表示', show_all: (v) => `すべて表示（${v.n}）`, no_filters: 'この結果に絞り込みはありません。',
    remove_filter: (v) => `絞り込みを外す：${v.field} ${v.value}`, clear_all: 'すべて解除',
    no_skus: 'SKUはありません', sku_count: (v) => `${v.n} SKU`, product_count: (v) => `${v.n} 商品`, showing: (v) => ` · ${v.n} 件を表示`,
    nothing_matches: '該当なし。語を減らすか、絞り込みを外してください。', no_skus_yet: 'SKUはまだありません。',
    variants: (v) => `${v.n} バリエーション`, search_failed: '検索に失敗しました',
    no_shipments: '出荷はありません', shipment_count: (v) => `${v.n} 件の出荷`, nothing_matches_short: '該当なし。',
    loading: '読み込み中…', signed_in: (v) => `ログイン中 · ${v.n} ブランド`,
    stock_by_location: (v) => `拠点別在庫 · バージョン ${v.version}`, location_col: '拠点', on_hand: '在庫数', reserved: '引当',
    safety: '安全在庫', available: '販売可能', incoming: '入荷予定', unsellable: '販売不可', in_transit: '移動中', total: '合計',
    not_stocked: 'どの拠点にも在庫はありません。',
    channels_title: 'チャネル別販売可能数', channel_col: 'チャネル', no_channels: 'チャネル未設定（すべての拠点から販売）',
    product: '商品ID', variants_title: 'この商品のバリエーション',
    holds_title: '在庫を押さえている引当・出荷', reservation: '引当', expires: '期限', qty: '数量', none: 'なし',
    history_title: '在庫履歴', history_when: '日時', history_cause: '理由', history_change: '変動', history_after: '変動後（在庫／引当／販売可能）',
    history_empty: '保持期間内の変更はありません。', history_older: 'さらに古い履歴', history_unknown_delta: '（前の変更は保持期間外）',
    cause_adjust: '在庫調整', cause_set: '在庫数の設定', cause_set_safety_stock: '安全在庫の設定', cause_reserved: '引当',
    cause_released: '引当解除', cause_expired: '引当期限切れ', cause_shipped: '出荷', cause_cancelled: '出荷キャンセル',
    cause_inbound: '入荷予定の登録', cause_received: '入荷', cause_inbound_closed: '入荷予定の終了',
    cause_mark_unsellable: '販売不可へ移動', cause_release_unsellable: '販売不可から戻し', cause_dispose: '廃棄',
    cause_transfer_shipped: '移動の出荷', cause_transfer_received: '移動の入荷', cause_transfer_written_off: '移動の未着処理',
    cause_return_received: '返品の受領',
    cause_reason: (v) => `理由: ${v.reason}`, cause_import: (v) => `取込 ${v.job}`,
    lines: '明細', status_history: 'ステータス履歴', sku: 'SKU', kind_warehouse: '倉庫', kind_store: '店舗', id: 'ID',
    not_accepted: (v) => `トークンが受け付けられませんでした: ${v.msg}`,
    needs_viewer: (v) => `このトークンでは全ブランドを閲覧できません（${v.msg}）。閲覧トークンが必要です。`,
    unreachable: 'サーバーに接続できません。zaiko は起動していますか？', unexpected: (v) => `予期しないエラー: ${v.msg}`,
    retry_in: (v) => `（${v.s} 秒後に再試行）`,
  },
  en: {
    tagline: 'stock search', tabs_label: 'What to search', tab_skus: 'SKUs', tab_shipments: 'Shipments', language: 'Language',
    forget_token: 'Forget token', login_title: 'Viewer token',
    login_help: 'Paste a viewer token (zk_…). An admin creates one with the call below. It is kept in this tab only (sessionStorage) and never goes into the address bar.',
    token: 'Token', use_token: 'Use token',
    search_skus: 'Search SKUs', sku_placeholder: 'Search name, SKU, product id, brand, tag…  ( / )',
    location: 'Location', all_locations: 'All locations', channel: 'Channel', all_channels: 'All channels',
    in_stock_only: 'In stock only', group_by_product: 'Group by product', group_unavailable: 'This server cannot group by product',
    sort: 'Sort', sort_relevance: 'Relevance', sort_updated: 'Recently updated', sort_available: 'Most available',
    sort_price_asc: 'Price: low to high', sort_price_desc: 'Price: high to low', filters: 'Filters', active_filters: 'Active filters',
    more_results: 'More results', search_shipments: 'Search shipments', shp_placeholder: 'Search shipment id, order ref, tracking number, SKU…  ( / )',
    brand: 'Brand', all_brands: 'All brands', status: 'Status', any_status: 'Any',
    status_accepted: 'accepted', status_picking: 'picking', status_packed: 'packed', status_shipped: 'shipped',
    status_delivered: 'delivered', status_cancelled: 'cancelled', status_active: 'active', status_consumed: 'consumed',
    status_released: 'released', status_expired: 'expired',
    from: 'From', to: 'To', day_placeholder: 'YYYY-MM-DD', bad_day: (v) => `"${v.value}" is not a date: type YYYY-MM-DD`,
    shipment: 'Shipment', order_ref: 'Order ref', tracking_number: 'Tracking number', carrier: 'Carrier', skus: 'SKUs', created: 'Created', updated: 'Updated',
    key_search: 'search', key_move: 'move', key_open: 'details', key_close: 'close / clear',
    col_brand: 'Brand', col_sku: 'SKU', col_name: 'Name', col_color: 'Color', col_size: 'Size', col_category: 'Category',
    col_price: 'Price', col_on_hand: 'On hand', col_available: 'Available', col_channel_available: (v) => `Available (${v.channel})`,
    col_unsellable: 'Unsellable', col_in_transit: 'In transit',
    col_location_available: (v) => `Available (in stock at ${v.location})`,
    facet_brand: 'Brand', facet_category: 'Category', facet_color: 'Color', facet_size: 'Size',
    facet_location: 'Location', facet_channel: 'Channel',
    show_fewer: 'Show fewer', show_all: (v) => `Show all ${v.n}`, no_filters: 'No filters for these results.',
    remove_filter: (v) => `Remove filter ${v.field}: ${v.value}`, clear_all: 'Clear all',
    no_skus: 'No SKUs', sku_count: (v) => `${v.n} SKU${v.one ? '' : 's'}`, product_count: (v) => `${v.n} product${v.one ? '' : 's'}`,
    showing: (v) => ` · showing ${v.n}`,
    nothing_matches: 'Nothing matches. Try fewer words or remove a filter.', no_skus_yet: 'No SKUs yet.',
    variants: (v) => `${v.n} variants`, search_failed: 'Search failed',
    no_shipments: 'No shipments', shipment_count: (v) => `${v.n} shipment${v.one ? '' : 's'}`, nothing_matches_short: 'Nothing matches.',
    loading: 'Loading…', signed_in: (v) => `Signed in · ${v.n} brands`,
    stock_by_location: (v) => `Stock by location · version ${v.version}`, location_col: 'Location', on_hand: 'On hand', reserved: 'Reserved',
    safety: 'Safety', available: 'Available', incoming: 'Incoming', unsellable: 'Unsellable', in_transit: 'In transit', total: 'Total',
    not_stocked: 'Not stocked at any location.',
    channels_title: 'Available per channel', channel_col: 'Channel', no_channels: 'No channels configured (sold from every location)',
    product: 'Product', variants_title: 'Variants of this product',
    holds_title: 'Reservations and shipments holding it', reservation: 'Reservation', expires: 'Expires', qty: 'Qty', none: 'None',
    history_title: 'Stock history', history_when: 'When', history_cause: 'Cause', history_change: 'Change', history_after: 'After (on hand / reserved / available)',
    history_empty: 'No changes within the retention.', history_older: 'Older changes', history_unknown_delta: '(the change before is past the retention)',
    cause_adjust: 'Adjustment', cause_set: 'On hand set', cause_set_safety_stock: 'Safety stock set', cause_reserved: 'Reserved',
    cause_released: 'Reservation released', cause_expired: 'Reservation expired', cause_shipped: 'Shipped', cause_cancelled: 'Shipment cancelled',
    cause_inbound: 'Inbound expected', cause_received: 'Received', cause_inbound_closed: 'Inbound closed',
    cause_mark_unsellable: 'Marked unsellable', cause_release_unsellable: 'Released from unsellable', cause_dispose: 'Disposed',
    cause_transfer_shipped: 'Transfer shipped', cause_transfer_received: 'Transfer received', cause_transfer_written_off: 'Transfer written off',
    cause_return_received: 'Return received',
    cause_reason: (v) => `reason: ${v.reason}`, cause_import: (v) => `import ${v.job}`,
    lines: 'Lines', status_history: 'Status history', sku: 'SKU', kind_warehouse: 'warehouse', kind_store: 'store', id: 'ID',
    not_accepted: (v) => `The token was not accepted: ${v.msg}`,
    needs_viewer: (v) => `This token cannot read across brands (${v.msg}). The search UI needs a viewer token.`,
    unreachable: 'The server could not be reached. Is zaiko running?', unexpected: (v) => `Unexpected error: ${v.msg}`,
    retry_in: (v) => ` (retry in ${v.s} s)`,
  },
};

/** The language to start in: the stored choice, else the browser's first of ja/en, else ja. */
function initialLang() {
  const stored = localStorage.getItem(LANG_KEY);
  if (stored === 'ja' || stored === 'en') return stored;
  for (const l of navigator.languages || [navigator.language || '']) {
    if (/^ja\b/i.test(l)) return 'ja';
    if (/^en\b/i.test(l)) return 'en';
  }
  return 'ja';
}

const $ = (id) => document.getElementById(id);
const fmt = { num: null, when: null, locale: 'ja-JP' };

const state = {
  token: sessionStorage.getItem(TOKEN_KEY),
  lang: initialLang(),
  tab: 'skus',
  brands: new Map(), // id -> name
  locations: new Map(), // id -> {name, kind}
  channels: new Map(), // brand -> Map(channel id -> name)
  labels: { colors: {}, categories: {} },
  groupSupported: true,
  skus: {
    q: '', filters: {}, inStock: false, sort: 'relevance', location: '', channel: '', group: true,
    hits: [], total: 0, facets: {}, cursor: null, seq: 0, ctrl: null, loaded: false, grouped: false,
    expanded: new Map(), // "brand/sku" -> detail row element
    facetOpen: new Set(),
  },
  shipments: {
    q: '', brand: '', status: '', from: '', to: '',
    hits: [], total: 0, cursor: null, seq: 0, ctrl: null, loaded: false,
    expanded: new Map(),
  },
};

/** A message in the current language (English, then the key, when missing). */
function t(key, vars) {
  const m = MESSAGES[state.lang][key] ?? MESSAGES.en[key] ?? key;
  return typeof m === 'function' ? m(vars || {}) : m;
}

function setFormats() {
  const en = (navigator.languages || []).find((l) => /^en\b/i.test(l));
  fmt.locale = state.lang === 'ja' ? 'ja-JP' : en || 'en-US';
  fmt.num = new Intl.NumberFormat(fmt.locale);
  fmt.when = new Intl.DateTimeFormat(fmt.locale, { year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit' });
}

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
const price = (v) => (typeof v === 'number' ? '¥' + fmt.num.format(v) : '—');
const qty = (v) => (typeof v === 'number' ? fmt.num.format(v) : '—');
const signed = (v) => (v > 0 ? '+' : v < 0 ? '−' : '±') + fmt.num.format(Math.abs(v));
const brandName = (id) => state.brands.get(id) || id;
const locationName = (id) => (state.locations.get(id) || {}).name || id;
const labelOf = (table, code) => (code && table[code] && table[code][state.lang]) || code;
const colorName = (code) => labelOf(state.labels.colors, code);
const categoryName = (code) => labelOf(state.labels.categories, code);
const statusName = (s) => (s ? t(`status_${s}`) : '—');

/** A channel's name: the brand's own, else any brand's, else its id. */
function channelName(brand, id) {
  const own = state.channels.get(brand);
  if (own && own.get(id)) return own.get(id);
  for (const m of state.channels.values()) if (m.get(id)) return m.get(id);
  return id;
}

/** A facet value as shown: names for brands, colours and categories. */
function facetLabel(field, value) {
  if (field === 'brand') return brandName(value);
  if (field === 'color') return colorName(value);
  if (field === 'category') return categoryName(value);
  return value;
}

function date(v) {
  if (!v) return '—';
  const d = new Date(v);
  return Number.isNaN(d.getTime()) ? String(v) : fmt.when.format(d);
}

/** A typed day (2026/12/05, 2026-12-05, 2026.12.5) as YYYY-MM-DD; null if it is none. */
function parseDay(raw) {
  const m = /^\s*(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?\s*$/.exec(raw.normalize('NFKC'));
  if (!m) return null;
  const [y, mo, d] = [Number(m[1]), Number(m[2]), Number(m[3])];
  const day = new Date(Date.UTC(y, mo - 1, d));
  if (day.getUTCFullYear() !== y || day.getUTCMonth() !== mo - 1 || day.getUTCDate() !== d) return null;
  return `${m[1]}-${String(mo).padStart(2, '0')}-${String(d).padStart(2, '0')}`;
}

/** YYYY-MM-DD as the day filter shows it: YYYY/MM/DD in Japanese, as is in English. */
const showDay = (iso) => (iso && state.lang === 'ja' ? iso.replaceAll('-', '/') : iso || '');

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

// ---------------------------------------------------------------- language

/** Writes every static label in the current language. */
function applyLanguage() {
  setFormats();
  document.documentElement.lang = state.lang;
  document.title = `zaiko 在庫 — ${t('tagline')}`;
  for (const el of document.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
  for (const el of document.querySelectorAll('[data-i18n-placeholder]')) el.placeholder = t(el.dataset.i18nPlaceholder);
  for (const el of document.querySelectorAll('[data-i18n-aria-label]')) el.setAttribute('aria-label', t(el.dataset.i18nAriaLabel));
  for (const btn of document.querySelectorAll('.lang-btn')) btn.setAttribute('aria-pressed', String(btn.dataset.lang === state.lang));
  $('shp-from').value = showDay(state.shipments.from);
  $('shp-to').value = showDay(state.shipments.to);
  groupCheckbox();
}

function setLanguage(lang) {
  if (lang === state.lang) return;
  state.lang = lang;
  localStorage.setItem(LANG_KEY, lang);
  applyLanguage();
  if (!state.token || $('app').hidden) return;
  $('session-state').textContent = t('signed_in', { n: fmt.num.format(state.brands.size) });
  fillSelects();
  // Open details are closed: they are rendered again in the new language on demand.
  state.skus.expanded.clear();
  state.shipments.expanded.clear();
  renderSkuHead();
  renderSkuRows();
  renderFacets();
  renderSkuSummary();
  renderShipmentRows();
  renderShipmentSummary();
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
    throw new ApiError(0, { detail: t('unreachable') });
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
    signOut(t('not_accepted', { msg: err.message }));
    return;
  }
  let msg = err instanceof ApiError ? err.message : t('unexpected', { msg: err && err.message });
  if (err instanceof ApiError && err.problem && Array.isArray(err.problem.errors) && err.problem.errors.length) {
    msg += ' — ' + err.problem.errors.map((e) => `${e.field}: ${e.detail}`).join('; ');
  }
  if (err instanceof ApiError && err.retryAfter) msg += t('retry_in', { s: err.retryAfter });
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

/** Names the API has beyond brands and locations; each missing one falls back to codes. */
async function loadNames() {
  const labels = api('/v1/search/labels').catch(() => null);
  const brands = [...state.brands.keys()].slice(0, CHANNEL_BRANDS_MAX);
  const channels = brands.map((b) =>
    api(`/v1/brands/${encodeURIComponent(b)}/channels`)
      .then((r) => [b, new Map((r.channels || []).map((c) => [c.id, c.name || c.id]))])
      .catch(() => [b, new Map()]),
  );
  const got = await labels;
  state.labels = { colors: (got && got.colors) || {}, categories: (got && got.categories) || {} };
  state.channels = new Map(await Promise.all(channels));
}

async function signIn(token) {
  state.token = token;
  try {
    const [brands, locations] = await Promise.all([api('/v1/brands'), api('/v1/locations')]);
    state.brands = new Map((brands.brands || []).map((b) => [b.id, b.name]));
    state.locations = new Map((locations.locations || []).map((l) => [l.id, l]));
    await loadNames();
  } catch (e) {
    state.token = null;
    if (e instanceof ApiError && e.status === 403) return showLogin(t('needs_viewer', { msg: e.message }));
    if (e instanceof ApiError && e.status === 401) return showLogin(t('not_accepted', { msg: e.message }));
    return showLogin(e.message);
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  $('login').hidden = true;
  $('app').hidden = false;
  requestAnimationFrame(fitTables);
  $('tabs').hidden = false;
  $('session-state').textContent = t('signed_in', { n: fmt.num.format(state.brands.size) });
  $('forget-token').hidden = false;
  fillSelects();
  renderSkuHead();
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
    if (s.location) p.set('location', s.location);
    if (s.channel) p.set('channel', s.channel);
    if (s.inStock) p.set('in_stock', 'true');
    if (!s.group) p.set('group', 'none');
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
    s.location = p.get('location') || '';
    s.channel = p.get('channel') || '';
    s.inStock = p.get('in_stock') === 'true';
    s.group = p.get('group') !== 'none';
    s.sort = p.get('sort') || 'relevance';
  } else {
    const s = state.shipments;
    s.q = p.get('q') || '';
    s.brand = p.get('brand') || '';
    s.status = p.get('status') || '';
    s.from = parseDay(p.get('from') || '') || '';
    s.to = parseDay(p.get('to') || '') || '';
  }
  $('sku-q').value = state.skus.q;
  $('sku-in-stock').checked = state.skus.inStock;
  $('sku-group').checked = state.skus.group;
  $('sku-sort').value = state.skus.sort;
  $('shp-q').value = state.shipments.q;
  $('shp-status').value = state.shipments.status;
  $('shp-from').value = showDay(state.shipments.from);
  $('shp-to').value = showDay(state.shipments.to);
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
  requestAnimationFrame(fitTables);
  showError('');
  writeHash();
  if (tab === 'skus' && !state.skus.loaded) skuSearch.now();
  if (tab === 'shipments' && !state.shipments.loaded) shpSearch.now();
  if (focus) searchInput().focus();
}

const searchInput = () => (state.tab === 'skus' ? $('sku-q') : $('shp-q'));

// ---------------------------------------------------------------- filters: location and channel

/** The location and channel pickers, with names; the channels of the brand filtered to, if any. */
function fillSelects() {
  const s = state.skus;
  const byName = (a, b) => a[1].localeCompare(b[1], fmt.locale);
  const locs = [...state.locations].map(([id, l]) => [id, l.name || id]).sort(byName);
  // replaceChildren takes nodes, not arrays: spread each list.
  $('sku-location').replaceChildren(h('option', { value: '' }, t('all_locations')), ...locs.map(([id, name]) => h('option', { value: id }, `${name} (${id})`)));
  $('sku-location').value = s.location;
  const channels = new Map();
  for (const [brand, m] of state.channels) {
    if (s.filters.brand && brand !== s.filters.brand) continue;
    for (const [id, name] of m) if (!channels.has(id)) channels.set(id, name);
  }
  if (s.channel && !channels.has(s.channel)) channels.set(s.channel, channelName(s.filters.brand, s.channel));
  $('sku-channel').replaceChildren(
    h('option', { value: '' }, t('all_channels')),
    ...[...channels].sort(byName).map(([id, name]) => h('option', { value: id }, name === id ? id : `${name} (${id})`)),
  );
  $('sku-channel').value = s.channel;
  const sel = $('shp-brand');
  sel.replaceChildren(
    h('option', { value: '' }, t('all_brands')),
    ...[...state.brands].sort((a, b) => a[0].localeCompare(b[0])).map(([id, name]) => h('option', { value: id }, `${name} (${id})`)),
  );
  sel.value = state.shipments.brand;
}

function groupCheckbox() {
  const box = $('sku-group');
  box.disabled = !state.groupSupported;
  box.checked = state.groupSupported && state.skus.group;
  box.closest('label').title = state.groupSupported ? '' : t('group_unavailable');
}

// ---------------------------------------------------------------- SKU search

function skuQuery(cursor) {
  const s = state.skus;
  const p = new URLSearchParams();
  if (s.q.trim()) p.set('q', s.q.trim());
  for (const f of FACET_FIELDS) if (s.filters[f]) p.set(f, s.filters[f]);
  if (s.location) p.set('location', s.location);
  if (s.channel) p.set('channel', s.channel);
  if (s.inStock) p.set('in_stock', 'true');
  if (s.group && state.groupSupported) p.set('group', 'product');
  if (s.sort !== 'relevance') p.set('sort', s.sort);
  p.set('limit', String(PAGE_SIZE));
  if (cursor) p.set('cursor', cursor);
  return p;
}

/** Whether a 400 is the server not knowing `group` (a server without product grouping). */
function refusesGrouping(e) {
  if (!(e instanceof ApiError) || e.status !== 400) return false;
  const errors = (e.problem && e.problem.errors) || [];
  return errors.some((x) => /group/.test(`${x.field} ${x.detail}`)) || /\bgroup\b/.test(e.message);
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
    const params = skuQuery(append ? s.cursor : null);
    let data;
    try {
      data = await api(`/v1/search/skus?${params}`, ctrl.signal);
    } catch (e) {
      if (!params.has('group') || !refusesGrouping(e)) throw e;
      // A server without product grouping: search without it from now on.
      state.groupSupported = false;
      groupCheckbox();
      params.delete('group');
      data = await api(`/v1/search/skus?${params}`, ctrl.signal);
    }
    if (seq !== s.seq) return;
    showError('');
    s.loaded = true;
    s.grouped = params.has('group');
    const hits = data.hits || [];
    if (append) {
      s.hits = s.hits.concat(hits);
      appendSkuRows(hits, s.hits.length - hits.length);
    } else {
      s.hits = hits;
      s.facets = data.facets || {};
      s.expanded.clear();
      renderSkuHead();
      renderSkuRows();
      renderFacets();
    }
    s.total = typeof data.total === 'number' ? data.total : s.hits.length;
    s.cursor = data.next_cursor || null;
    renderSkuSummary();
  } catch (e) {
    if (seq === s.seq && e.name !== 'AbortError') {
      report(e);
      $('sku-count').textContent = t('search_failed');
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
  const n = fmt.num.format(s.total);
  const counted = s.grouped ? t('product_count', { n, one: s.total === 1 }) : t('sku_count', { n, one: s.total === 1 });
  $('sku-count').textContent = s.total === 0 ? t('no_skus') : counted + (s.hits.length < s.total ? t('showing', { n: fmt.num.format(s.hits.length) }) : '');
  const empty = $('sku-empty');
  empty.hidden = s.hits.length > 0;
  const filtered = s.q || Object.values(s.filters).some(Boolean) || s.inStock || s.location || s.channel;
  empty.textContent = filtered ? t('nothing_matches') : t('no_skus_yet');
  $('sku-more').hidden = !s.cursor;
  renderChips();
}

/** The columns of the SKU table: a channel filter adds that channel's availability. */
function skuColumns() {
  const s = state.skus;
  const cols = [
    ['col-brand', t('col_brand')],
    ['col-sku', t('col_sku')],
    ['col-name', t('col_name')],
    ['col-color', t('col_color')],
    ['col-size', t('col_size')],
    ['col-category', t('col_category')],
    ['num', t('col_price')],
    ['num', t('col_on_hand')],
    ['num', t('col_available')],
    ['num col-unsellable', t('col_unsellable')],
    ['num col-in-transit', t('col_in_transit')],
  ];
  if (s.channel) cols.push(['num col-channel', t('col_channel_available', { channel: channelName(s.filters.brand, s.channel) })]);
  return cols;
}

function renderSkuHead() {
  // The channel's column is headed by its name over "available", on two short lines.
  const head = ([cls, label]) =>
    cls.includes('col-channel')
      ? h('th', { scope: 'col', class: cls, title: label }, channelName(state.skus.filters.brand, state.skus.channel), h('br'), h('span', { class: 'sub' }, t('col_available')))
      : h('th', { scope: 'col', class: cls }, label);
  $('sku-head').replaceChildren(...skuColumns().map(head));
}

function skuRow(hit, index) {
  const key = `${hit.brand}/${hit.sku}`;
  const available = typeof hit.available === 'number' ? hit.available : null;
  const variants = hit.variants && hit.variants.total > 1 ? h('span', { class: 'variants', title: (hit.variants.skus || []).join(', ') }, t('variants', { n: fmt.num.format(hit.variants.total) })) : null;
  const cells = [
    h('td', { class: 'col-brand', title: hit.brand }, brandName(hit.brand)),
    h('td', { class: 'col-sku mono' }, hit.sku),
    h('td', { class: 'col-name' }, text(hit.name), variants ? ' ' : null, variants),
    h('td', { class: 'col-color', title: hit.color || null }, text(colorName(hit.color))),
    h('td', { class: 'col-size' }, text(hit.size)),
    h('td', { class: 'col-category', title: hit.category || null }, text(categoryName(hit.category))),
    h('td', { class: 'num' }, price(hit.price)),
    h('td', { class: 'num' }, qty(hit.on_hand)),
    h('td', { class: 'num' + (available === 0 ? ' zero' : '') }, qty(hit.available)),
    // Held or on the way, never for sale: a quiet zero, a number that stands out.
    h('td', { class: 'num col-unsellable' + (hit.unsellable ? ' held' : ' none') }, qty(hit.unsellable)),
    h('td', { class: 'num col-in-transit' + (hit.in_transit ? ' held' : ' none') }, qty(hit.in_transit)),
  ];
  if (state.skus.channel) {
    const c = hit.channel_available;
    cells.push(h('td', { class: 'num col-channel' + (c === 0 ? ' zero' : '') }, qty(c)));
  }
  return h('tr', { class: 'row', tabindex: '-1', dataset: { index: String(index), key }, 'aria-expanded': 'false' }, cells);
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
      const label = facetLabel(field, v.value);
      return h(
        'li',
        null,
        h(
          'button',
          { type: 'button', class: 'facet', 'aria-pressed': String(on), dataset: { field, value: v.value }, title: label !== v.value ? v.value : null },
          h('span', { class: 'facet-value', lang: 'ja' }, label),
          h('span', { class: 'facet-count' }, v.count === null ? '' : fmt.num.format(v.count)),
        ),
      );
    });
    const more =
      values.length > FACET_VISIBLE
        ? h('button', { type: 'button', class: 'link facet-more', dataset: { more: field } }, open ? t('show_fewer') : t('show_all', { n: values.length }))
        : null;
    groups.push(h('div', { class: 'facet-group' }, h('h2', null, t(`facet_${field}`)), h('ul', null, items), more));
  }
  box.replaceChildren(...(groups.length ? groups : [h('p', { class: 'muted' }, t('no_filters'))]));
}

function chip(field, title, label) {
  return h(
    'li',
    null,
    h(
      'button',
      { type: 'button', class: 'chip', dataset: { chip: field }, 'aria-label': t('remove_filter', { field: title, value: label }) },
      title ? h('span', { class: 'chip-field' }, title) : null,
      h('span', { lang: 'ja' }, label),
      h('span', { class: 'chip-x', 'aria-hidden': 'true' }, '×'),
    ),
  );
}

function renderChips() {
  const s = state.skus;
  const chips = [];
  for (const field of FACET_FIELDS) {
    const v = s.filters[field];
    if (v) chips.push(chip(field, t(`facet_${field}`), facetLabel(field, v)));
  }
  if (s.location) chips.push(chip('location', t('facet_location'), locationName(s.location)));
  if (s.channel) chips.push(chip('channel', t('facet_channel'), channelName(s.filters.brand, s.channel)));
  if (s.inStock) chips.push(chip('in_stock', '', t('in_stock_only')));
  if (chips.length > 1) chips.push(h('li', null, h('button', { type: 'button', class: 'link', dataset: { chip: '*' } }, t('clear_all'))));
  $('sku-chips').replaceChildren(...chips);
}

function toggleFilter(field, value) {
  const s = state.skus;
  s.filters[field] = s.filters[field] === value ? undefined : value;
  if (field === 'brand') fillSelects();
  skuSearch.now();
}

function removeChip(field) {
  const s = state.skus;
  if (field === '*') {
    s.filters = {};
    s.inStock = false;
    s.location = '';
    s.channel = '';
  } else if (field === 'in_stock') {
    s.inStock = false;
  } else if (field === 'location' || field === 'channel') {
    s[field] = '';
  } else {
    s.filters[field] = undefined;
  }
  $('sku-in-stock').checked = s.inStock;
  fillSelects();
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
  const holder = h('div', { class: 'detail-body' }, h('p', { class: 'muted' }, t('loading')));
  const span = isSku ? skuColumns().length : SHP_COLUMNS;
  const detail = h('tr', { class: 'detail' }, h('td', { colspan: String(span) }, holder));
  row.after(detail);
  row.setAttribute('aria-expanded', 'true');
  s.expanded.set(key, detail);
  const hit = s.hits[Number(row.dataset.index)];
  (isSku ? loadSkuDetail(hit, holder) : loadShipment(hit, holder)).catch((e) => report(e, holder));
}

const skuPath = (hit) => `/v1/brands/${encodeURIComponent(hit.brand)}/skus/${encodeURIComponent(hit.sku)}`;

/** A SKU's detail: stock per location and channel, what holds it, and its history. */
async function loadSkuDetail(hit, holder) {
  const stock = await api(`${skuPath(hit)}/stock`);
  const history = h('section', { class: 'sku-history' }, h('h3', null, t('history_title')), h('p', { class: 'muted' }, t('loading')));
  const holds = h('section', { class: 'holds' }, h('h3', null, t('holds_title')), h('p', { class: 'muted' }, t('loading')));
  const facts = [];
  if (hit.product_id) facts.push(h('div', null, h('dt', null, t('product')), h('dd', { class: 'mono' }, hit.product_id)));
  if (hit.variants && hit.variants.total > 1) {
    facts.push(h('div', null, h('dt', null, t('variants_title')), h('dd', { class: 'mono' }, (hit.variants.skus || []).join(', '), hit.variants.total > (hit.variants.skus || []).length ? ' …' : '')));
  }
  holder.replaceChildren(
    h('div', { class: 'split' }, stockTable(stock), channelTable(hit.brand, stock)),
    facts.length ? h('dl', { class: 'facts' }, facts) : '',
    holds,
    history,
  );
  loadHistory(hit, history).catch((e) => report(e, history));
  loadHolds(hit, holds).catch((e) => report(e, holds));
}

function stockTable(stock) {
  const cols = ['on_hand', 'reserved', 'safety_stock', 'available', 'incoming', 'unsellable', 'in_transit'];
  const heads = {
    on_hand: t('on_hand'), reserved: t('reserved'), safety_stock: t('safety'), available: t('available'), incoming: t('incoming'),
    unsellable: t('unsellable'), in_transit: t('in_transit'),
  };
  const line = (label, l, cls) =>
    h('tr', { class: cls }, h('th', { scope: 'row' }, label), cols.map((c) => h('td', { class: 'num' + (c === 'available' && l[c] === 0 ? ' zero' : ''), dataset: { level: c } }, qty(l[c]))));
  const rows = Object.entries(stock.locations || {}).map(([loc, l]) => {
    const info = state.locations.get(loc);
    const kind = info && info.kind ? ` · ${MESSAGES[state.lang][`kind_${info.kind}`] || info.kind}` : '';
    return line(h('span', null, locationName(loc), h('span', { class: 'muted' }, ` ${loc}${kind}`)), l);
  });
  return h(
    'table',
    { class: 'stock locations' },
    h('caption', null, t('stock_by_location', { version: text(stock.version) })),
    h('thead', null, h('tr', null, h('th', { scope: 'col' }, t('location_col')), cols.map((c) => h('th', { scope: 'col', class: 'num' }, heads[c])))),
    h('tbody', null, rows.length ? rows : h('tr', null, h('td', { colspan: String(cols.length + 1), class: 'muted' }, t('not_stocked')))),
    stock.total ? h('tfoot', null, line(t('total'), stock.total, 'total')) : null,
  );
}

function channelTable(brand, stock) {
  const entries = Object.entries(stock.channels || {});
  const rows = entries.map(([c, v]) =>
    h('tr', null, h('th', { scope: 'row' }, h('span', null, channelName(brand, c), h('span', { class: 'muted' }, ` ${c}`))), h('td', { class: 'num' + (v.available === 0 ? ' zero' : '') }, qty(v.available))),
  );
  return h(
    'table',
    { class: 'stock channels' },
    h('caption', null, t('channels_title')),
    h('thead', null, h('tr', null, h('th', { scope: 'col' }, t('channel_col')), h('th', { scope: 'col', class: 'num' }, t('available')))),
    h('tbody', null, rows.length ? rows : h('tr', null, h('td', { colspan: '2', class: 'muted' }, t('no_channels')))),
  );
}

/** What a history change's cause says: its kind, the object or reason, the import. */
function causeText(c) {
  const parts = [t(`cause_${c.kind}`)];
  if (c.kind === 'adjust' && typeof c.delta === 'number') parts[0] += ` ${signed(c.delta)}`;
  if (c.kind === 'set' && typeof c.on_hand === 'number') parts[0] += ` → ${qty(c.on_hand)}`;
  if (c.kind === 'set_safety_stock' && typeof c.quantity === 'number') parts[0] += ` → ${qty(c.quantity)}`;
  if (['mark_unsellable', 'release_unsellable', 'dispose'].includes(c.kind) && typeof c.quantity === 'number') parts[0] += ` ${qty(c.quantity)}`;
  if (c.id) parts.push(c.id);
  if (c.reason) parts.push(t('cause_reason', { reason: c.reason }));
  if (c.import) parts.push(t('cause_import', { job: c.import }));
  return parts.join(' · ');
}

/** The moved levels of a change, per location: "つくば 在庫数 −1 · 引当 +2". */
function deltaText(change) {
  if (!change.delta) return t('history_unknown_delta');
  const names = {
    on_hand: t('on_hand'), reserved: t('reserved'), safety_stock: t('safety'), incoming: t('incoming'), unsellable: t('unsellable'),
    in_transit: t('in_transit'),
  };
  return Object.entries(change.delta.locations || {})
    .map(([loc, d]) => {
      const moved = Object.keys(names).filter((k) => d[k]).map((k) => `${names[k]} ${signed(d[k])}`);
      return `${locationName(loc)} ${moved.join(' · ') || `${t('available')} ${signed(d.available)}`}`;
    })
    .join(' / ') || '—';
}

function historyRow(c) {
  const total = c.total || {};
  return h(
    'tr',
    null,
    h('td', { class: 'nowrap' }, h('time', { datetime: c.at }, date(c.at))),
    h('td', { class: `cause cause-${c.cause.kind}` }, causeText(c.cause)),
    h('td', null, deltaText(c)),
    h('td', { class: 'num' }, `${qty(total.on_hand)} / ${qty(total.reserved)} / ${qty(total.available)}`),
  );
}

/** The SKU's changes, newest first, a page at a time (`order=newest_first`). */
async function loadHistory(hit, box) {
  const body = h('tbody');
  const more = h('button', { type: 'button', class: 'link', hidden: true }, t('history_older'));
  let next = null;
  const page = async () => {
    const p = new URLSearchParams({ order: 'newest_first', limit: String(HISTORY_PAGE) });
    if (next) p.set('after', next);
    const data = await api(`${skuPath(hit)}/history?${p}`);
    const changes = data.changes || [];
    body.append(...changes.map(historyRow));
    next = data.next;
    more.hidden = changes.length < HISTORY_PAGE;
    return changes.length;
  };
  const first = await page();
  more.addEventListener('click', () => page().catch((e) => report(e, box)));
  const table = h(
    'table',
    { class: 'stock history-table' },
    h('thead', null, h('tr', null, [t('history_when'), t('history_cause'), t('history_change')].map((x) => h('th', { scope: 'col' }, x)), h('th', { scope: 'col', class: 'num' }, t('history_after')))),
    body,
  );
  box.replaceChildren(h('h3', null, t('history_title')), first ? table : h('p', { class: 'muted' }, t('history_empty')), more);
}

/**
 * Reservations and shipments that hold the SKU. Shipments: a search by the SKU among
 * those not yet shipped. Reservations have no search: the ones still active among
 * those its recent history names.
 */
async function loadHolds(hit, box) {
  const p = new URLSearchParams({ q: hit.sku, brand: hit.brand, status: HOLDING_STATUSES.join(','), limit: '20' });
  const [shipments, recent] = await Promise.all([
    api(`/v1/search/shipments?${p}`).catch(() => ({ hits: [] })),
    api(`${skuPath(hit)}/history?order=newest_first&limit=${HOLDS_SCAN}`).catch(() => ({ changes: [] })),
  ]);
  const ids = [...new Set((recent.changes || []).filter((c) => c.cause.kind === 'reserved' && c.cause.id).map((c) => c.cause.id))].slice(0, HOLDS_MAX);
  const reservations = (
    await Promise.all(ids.map((id) => api(`/v1/brands/${encodeURIComponent(hit.brand)}/reservations/${encodeURIComponent(id)}`).catch(() => null)))
  ).filter((r) => r && r.status === 'active');
  const linesOf = (lines) => (lines || []).filter((l) => l.sku === hit.sku);
  const rows = [];
  for (const r of reservations) {
    const n = linesOf(r.lines).reduce((a, l) => a + l.quantity, 0);
    rows.push(h('tr', null, h('td', null, t('reservation')), h('td', { class: 'mono' }, r.id), h('td', null, statusName(r.status), r.channel ? ` · ${channelName(hit.brand, r.channel)}` : '', r.expires_at ? ` · ${t('expires')} ${date(r.expires_at)}` : ''), h('td', { class: 'num' }, qty(n))));
  }
  for (const s of (shipments.hits || []).filter((x) => shipmentSkus(x).includes(hit.sku))) {
    const n = linesOf(s.lines).reduce((a, l) => a + l.quantity, 0);
    rows.push(h('tr', null, h('td', null, t('shipment')), h('td', { class: 'mono' }, s.id), h('td', null, h('span', { class: `status status-${s.status}` }, statusName(s.status))), h('td', { class: 'num' }, n ? qty(n) : '—')));
  }
  box.replaceChildren(
    h('h3', null, t('holds_title')),
    rows.length
      ? h('table', { class: 'stock holds-table' }, h('thead', null, h('tr', null, ['', t('id'), t('status'), t('qty')].map((x, i) => h('th', { scope: 'col', class: i === 3 ? 'num' : null }, x)))), h('tbody', null, rows))
      : h('p', { class: 'muted' }, t('none')),
  );
}

async function loadShipment(hit, holder) {
  const shp = await api(`/v1/brands/${encodeURIComponent(hit.brand)}/shipments/${encodeURIComponent(hit.id)}`);
  // The shipment carries the recipient's address: it is never shown here (staff
  // search needs ids and status, not personal data), so it is dropped at once.
  delete shp.ship_to;
  const lines = (shp.lines || []).map((l) =>
    h('tr', null, h('td', { class: 'mono' }, l.sku), h('td', null, l.location ? locationName(l.location) : '—'), h('td', { class: 'num' }, qty(l.quantity))),
  );
  const statuses = (shp.history || shp.status_history || []).map((e) =>
    h('li', null, h('span', { class: `status status-${e.status}` }, statusName(e.status)), ' ', h('time', { datetime: e.at || '' }, date(e.at))),
  );
  holder.replaceChildren(
    h(
      'div',
      { class: 'split' },
      h(
        'table',
        { class: 'stock' },
        h('caption', null, t('lines')),
        h('thead', null, h('tr', null, h('th', { scope: 'col' }, t('sku')), h('th', { scope: 'col' }, t('location_col')), h('th', { scope: 'col', class: 'num' }, t('qty')))),
        h('tbody', null, lines),
      ),
      h('div', null, h('h3', null, t('status_history')), statuses.length ? h('ol', { class: 'history' }, statuses) : h('p', { class: 'muted' }, '—')),
    ),
  );
}

// ---------------------------------------------------------------- shipments

/** A day filter's value as the RFC 3339 instant of local midnight (end: the next midnight). */
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
    if (append) {
      $('shp-rows').append(...hits.map((hit, i) => shipmentRow(hit, s.hits.length + i)));
      s.hits = s.hits.concat(hits);
    } else {
      s.hits = hits;
      s.facets = data.facets || {};
      renderShipmentRows();
    }
    s.total = typeof data.total === 'number' ? data.total : s.hits.length;
    s.cursor = data.next_cursor || null;
    renderShipmentSummary();
  } catch (e) {
    if (seq === s.seq && e.name !== 'AbortError') {
      report(e);
      $('shp-count').textContent = t('search_failed');
    }
  } finally {
    if (seq === s.seq) setBusy('shp', false);
  }
}

function renderShipmentRows() {
  const s = state.shipments;
  s.expanded.clear();
  const body = $('shp-rows');
  body.replaceChildren(...s.hits.map(shipmentRow));
  const first = body.querySelector('tr.row');
  if (first) first.tabIndex = 0;
}

function renderShipmentSummary() {
  const s = state.shipments;
  if (!s.loaded) return;
  showFacetCounts(s.facets || {});
  const n = fmt.num.format(s.total);
  $('shp-count').textContent =
    s.total === 0 ? t('no_shipments') : t('shipment_count', { n, one: s.total === 1 }) + (s.hits.length < s.total ? t('showing', { n: fmt.num.format(s.hits.length) }) : '');
  $('shp-empty').hidden = s.hits.length > 0;
  $('shp-empty').textContent = t('nothing_matches_short');
  $('shp-more').hidden = !s.cursor;
}

/** Shows the shipment facets' counts in the brand and status pickers ("配達済み · 148"). */
function showFacetCounts(facets) {
  for (const [id, field] of [['shp-brand', 'brand'], ['shp-status', 'status']]) {
    const counts = new Map((facets[field] || []).map((v) => [v.value, v.count]));
    for (const opt of $(id).options) {
      if (!opt.value) continue;
      const label = field === 'status' ? statusName(opt.value) : `${brandName(opt.value)} (${opt.value})`;
      const n = counts.get(opt.value);
      opt.textContent = n === undefined ? label : `${label} · ${fmt.num.format(n)}`;
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
    h('td', null, h('span', { class: `status status-${hit.status}` }, statusName(hit.status))),
    h('td', { class: 'mono' }, text(hit.tracking_number)),
    h('td', null, text(hit.carrier)),
    h('td', { class: 'mono skus', title: skus.join(', ') }, skus.length ? skus.slice(0, 3).join(', ') + (skus.length > 3 ? ` +${skus.length - 3}` : '') : '—'),
    h('td', { class: 'nowrap' }, date(hit.created_at)),
    h('td', { class: 'nowrap' }, date(hit.updated_at)),
  );
}

/** A day filter changed: a date it can read searches; anything else says how to type it. */
function onDayChange(e, field) {
  const input = e.target;
  const raw = input.value.trim();
  const day = raw ? parseDay(raw) : '';
  input.setAttribute('aria-invalid', String(day === null));
  if (day === null) {
    showError(t('bad_day', { value: raw }));
    return;
  }
  showError('');
  input.value = showDay(day);
  state.shipments[field] = day;
  shpSearch.now();
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
  if (!row || e.target !== row) return;
  const rows = rowsOf(row.parentElement);
  const i = rows.indexOf(row);
  const more = state.tab === 'skus' ? $('sku-more') : $('shp-more');
  switch (e.key) {
    case 'ArrowDown':
      e.preventDefault();
      if (i + 1 < rows.length) focusRow(rows[i + 1]);
      else if (!more.hidden) more.focus();
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
  for (const btn of document.querySelectorAll('.lang-btn')) btn.addEventListener('click', () => setLanguage(btn.dataset.lang));
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
  $('sku-group').addEventListener('change', (e) => {
    state.skus.group = e.target.checked;
    skuSearch.now();
  });
  for (const field of ['location', 'channel']) {
    $(`sku-${field}`).addEventListener('change', (e) => {
      state.skus[field] = e.target.value;
      skuSearch.now();
    });
  }
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
  for (const [id, field] of [['shp-brand', 'brand'], ['shp-status', 'status']]) {
    $(id).addEventListener('change', (e) => {
      state.shipments[field] = e.target.value;
      shpSearch.now();
    });
  }
  $('shp-from').addEventListener('change', (e) => onDayChange(e, 'from'));
  $('shp-to').addEventListener('change', (e) => onDayChange(e, 'to'));
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

// Each results box ends at the window's bottom whatever sits above it: the toolbar wraps
// to two rows at narrow widths or with longer English labels, so its height is measured,
// not assumed (the header row sticks to the box's top while the rows scroll).
function fitTables() {
  for (const wrap of document.querySelectorAll('.table-wrap')) {
    if (!wrap.offsetParent) continue;
    const top = wrap.getBoundingClientRect().top + window.scrollY;
    wrap.style.setProperty('--wrap-top', `${Math.round(top)}px`);
  }
}

if (typeof ResizeObserver === 'function') {
  const watch = new ResizeObserver(() => fitTables());
  for (const el of document.querySelectorAll('.toolbar, .summary, .bar, #error')) watch.observe(el);
}
window.addEventListener('resize', fitTables);

wire();
applyLanguage();
readHash();
if (state.token) signIn(state.token);
else showLogin('');
