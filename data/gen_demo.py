#!/usr/bin/env python3
"""Deterministic demo data for `zaiko serve --demo`.

    python3 data/gen_demo.py                 # writes data/demo/*.ndjson (seed 7)
    python3 data/gen_demo.py --seed 7 --skus 20000 --out data/demo

Pure stdlib (Python 3.11). The same arguments always give byte-identical files:
one random.Random(seed) drives everything, nothing reads the clock, and every
collection is walked in a fixed order.

Each output line is exactly the JSON body of one API request, plus the path ids
of that request (and, for stock batches, the Idempotency-Key). `manifest.json`
says, per file and in replay order, which request to send and which keys of the
line go into the path or a header; `data/README.md` describes every format.

The generator keeps its own model of the stock it hands out (on_hand, safety
stock, reservations, channel buffers), so every reservation and shipment in the
files can be fulfilled when the files are replayed in manifest order against an
empty server.
"""
import argparse
import json
import os
import random
import unicodedata

# ------------------------------------------------------------------ the world

# (id, display name). Ids match ^[a-z0-9][a-z0-9_-]{0,63}$. Names mix kanji,
# katakana, hiragana and Latin; none contains a product word, so a search for
# e.g. スニーカー can only match through a product name.
BRANDS = [
    ("aoyama-yohinten", "青山洋品店", "AY"),
    ("komorebi", "こもれび", "KM"),
    ("urban-label", "アーバンレーベル", "UL"),
    ("harbor-supply", "Harbor Supply & Co.", "HS"),
    ("sakurai-hifuku", "桜井被服", "SK"),
    ("stella-atelier", "ステラ アトリエ", "ST"),
    ("north-field", "North Field Outfitters", "NF"),
    ("tsumugi-do", "つむぎ堂", "TD"),
]
# Relative catalog size per brand: a few big brands, a long tail.
BRAND_WEIGHT = [26, 18, 16, 12, 10, 8, 6, 4]

LOCATIONS = [
    # (id, name, kind)
    ("tsukuba", "つくば物流センター", "warehouse"),
    ("kawasaki", "川崎倉庫", "warehouse"),
    ("osaka", "大阪DC", "warehouse"),
    ("store-shibuya", "渋谷店", "store"),
]
WAREHOUSES = ["tsukuba", "kawasaki", "osaka"]
BRAND_CODE = {bid: code for bid, _, code in BRANDS}

# Channels every brand configures: (id, name, locations or None for all, buffer).
CHANNELS = [
    ("zozotown", "ZOZOTOWN", WAREHOUSES, 1),
    ("brand_ec", "自社EC", WAREHOUSES, 0),
    ("store-shibuya", "渋谷店 店頭", ["store-shibuya"], 0),
]
# Channels a reservation or a shipment is made for, with their weights.
ORDER_CHANNELS = [("zozotown", 5), ("brand_ec", 4), ("store-shibuya", 1)]

# category -> (Japanese items, Latin items, size run, price range in yen)
CATEGORIES = {
    "tops/t-shirts": (["Tシャツ", "ロングスリーブTシャツ", "ポケットTシャツ", "カットソー", "ロゴTシャツ"],
                      ["T-Shirt", "Pocket Tee", "Long Sleeve Tee"], "apparel", (1490, 7990)),
    "tops/shirts": (["シャツ", "オックスフォードシャツ", "ボタンダウンシャツ", "開襟シャツ", "ブラウス", "ネルシャツ"],
                    ["Oxford Shirt", "Camp Collar Shirt", "Flannel Shirt"], "apparel", (3990, 16900)),
    "tops/knitwear": (["セーター", "カーディガン", "ニットベスト", "タートルネックニット"],
                      ["Crewneck Sweater", "Cardigan", "Knit Vest"], "apparel", (4990, 32900)),
    "tops/sweats": (["スウェット", "パーカー", "トレーナー", "ジップパーカー"],
                    ["Hoodie", "Sweatshirt", "Zip Hoodie"], "apparel", (3990, 14900)),
    "bottoms/denim": (["デニムパンツ", "ジーンズ", "デニムスカート"],
                      ["Selvedge Jeans", "Denim Pants"], "waist", (5990, 26900)),
    "bottoms/pants": (["チノパンツ", "ワイドパンツ", "スラックス", "カーゴパンツ", "イージーパンツ"],
                      ["Chino Pants", "Cargo Pants", "Easy Pants"], "waist", (3990, 19900)),
    "bottoms/skirts": (["プリーツスカート", "ロングスカート", "フレアスカート"],
                       ["Pleated Skirt", "Midi Skirt"], "apparel", (3990, 15900)),
    "outerwear/jackets": (["ジャケット", "ブルゾン", "ダウンジャケット", "マウンテンパーカー", "コーチジャケット"],
                          ["Down Jacket", "Coach Jacket", "Trucker Jacket"], "apparel", (7990, 59900)),
    "outerwear/coats": (["コート", "トレンチコート", "チェスターコート", "ダッフルコート"],
                        ["Trench Coat", "Overcoat"], "apparel", (12900, 89900)),
    "shoes/sneakers": (["スニーカー", "ハイカットスニーカー", "キャンバススニーカー", "スリッポン", "ランニングシューズ"],
                       ["Sneakers", "Low Top Sneakers", "Court Sneakers"], "shoes", (4990, 24900)),
    "shoes/boots": (["ブーツ", "サイドゴアブーツ", "ワークブーツ", "レインブーツ"],
                    ["Chelsea Boots", "Work Boots"], "shoes", (8990, 49900)),
    "shoes/sandals": (["サンダル", "スポーツサンダル", "下駄", "雪駄"], ["Slides", "Sandals"], "shoes", (2490, 12900)),
    "bags/totes": (["トートバッグ", "エコバッグ", "巾着バッグ"], ["Canvas Tote", "Market Bag"], "free", (1290, 19900)),
    "bags/backpacks": (["リュック", "バックパック", "デイパック"], ["Backpack", "Rolltop Pack"], "free", (4990, 29900)),
    "accessories/hats": (["キャップ", "バケットハット", "ニット帽", "麦わら帽子"], ["Cap", "Bucket Hat", "Beanie"], "free", (1490, 8990)),
    "accessories/socks": (["靴下", "ソックス", "くつした 3足組", "五本指ソックス", "たび靴下"], ["Crew Socks 3-Pack"], "free", (390, 2490)),
    "accessories/scarves": (["マフラー", "ストール", "手ぬぐい", "てぬぐい"], ["Scarf", "Stole"], "free", (990, 14900)),
    "innerwear/thermal": (["インナー", "タンクトップ", "レギンス", "肌着"], ["Base Layer", "Thermal Top"], "apparel", (790, 3990)),
}
CATEGORY_WEIGHT = [14, 10, 8, 8, 6, 9, 4, 7, 4, 8, 3, 2, 4, 3, 3, 3, 2, 3]

MATERIALS = ["コットン", "綿", "リネン", "麻", "ウール", "カシミヤ", "本革", "スエード", "デニム", "キャンバス",
             "ナイロン", "フリース", "コーデュロイ", "シルク", "オーガニックコットン", "綿麻"]
MODIFIERS_KATAKANA = ["オーバーサイズ", "ストレッチ", "リラックス", "スリム", "ワイド", "ヴィンテージ", "ベーシック",
                      "ヘビーウェイト", "ビッグシルエット", "クラシック", "ロゴ刺繍"]
MODIFIERS_KANJI = ["撥水", "防水", "速乾", "軽量", "厚手", "薄手", "無地", "花柄", "千鳥格子", "吸湿発熱",
                   "接触冷感", "ボーダー柄", "日本製"]
# Only where they make sense: sleeves on tops, brushed lining on sweats and pants.
MODIFIERS_BY_CATEGORY = {"tops/": ["長袖", "半袖", "七分袖", "ボーダー柄"], "innerwear/": ["長袖", "半袖", "裏起毛"],
                         "tops/sweats": ["裏起毛"], "bottoms/pants": ["裏起毛", "ストレッチ"]}
MODIFIERS_HIRAGANA = ["ふんわり", "もちもち", "さらさら", "ゆったり", "やわらか", "あったか", "ひんやり"]
MODIFIERS_LATIN = ["Organic", "Heavyweight", "Relaxed", "Merino", "Recycled", "Essential", "Washed", "Garment-Dyed"]
SUFFIXES_LATIN = ["", "", "", "Relaxed Fit", "Slim Fit", "Unisex"]

COLORS = [("black", "BK"), ("white", "WH"), ("navy", "NV"), ("gray", "GY"), ("beige", "BE"), ("olive", "OL"),
          ("brown", "BR"), ("khaki", "KH"), ("blue", "BL"), ("red", "RD"), ("green", "GN"), ("pink", "PK"),
          ("ecru", "EC"), ("charcoal", "CH"), ("indigo", "IN")]
COLOR_WEIGHT = [20, 18, 15, 12, 8, 6, 6, 5, 6, 3, 3, 3, 4, 4, 4]
SIZE_RUNS = {
    "apparel": ["XS", "S", "M", "L", "XL", "XXL"],
    "waist": ["28", "30", "31", "32", "33", "34", "36"],
    "shoes": ["23.0", "24.0", "25.0", "25.5", "26.0", "26.5", "27.0", "28.0"],
    "free": ["F"],
}
# Tags never contain product words (see BRANDS).
TAGS = ["新作", "セール", "送料無料", "ユニセックス", "メンズ", "レディース", "キッズ", "限定", "再入荷",
        "オンライン限定", "定番", "ギフト", "予約", "organic", "recycled", "sustainable"]
FITS = ["regular", "relaxed", "slim", "oversized"]
ORIGINS = ["日本製", "中国製", "ベトナム製", "ポルトガル製", "イタリア製"]
SEASONS = ["2025SS", "2025AW", "2026SS", "2026AW"]

CARRIERS = [("ヤマト運輸", 12), ("佐川急便", 12), ("日本郵便", 11)]
PREFECTURES = ["東京都", "神奈川県", "大阪府", "愛知県", "福岡県", "北海道", "京都府", "宮城県", "広島県", "沖縄県"]
# Obviously fake people: 見本 (sample), 試験 (test), テスト, Demo.
FAMILY = ["見本", "試験", "テスト", "デモ", "仮名"]
GIVEN = ["太郎", "花子", "一郎", "さくら", "ハナコ", "次郎", "ゆい"]

# ------------------------------------------------------------------ width variants

_HALF_KANA = {}
for _cp in range(0xFF66, 0xFF9E):
    _h = chr(_cp)
    _HALF_KANA.setdefault(unicodedata.normalize("NFKC", _h), _h)
    for _mark in ("\uff9e", "\uff9f"):  # half-width (han)dakuten
        _full = unicodedata.normalize("NFKC", _h + _mark)
        if len(_full) == 1:
            _HALF_KANA.setdefault(_full, _h + _mark)
_HALF_KANA["ー"] = "\uff70"


def half_width_kana(s):
    """ｵｰﾊﾞｰｻｲｽﾞ: how old POS and CSV exports still write katakana."""
    return "".join(_HALF_KANA.get(c, c) for c in s)


def full_width_latin(s):
    """Ｔシャツ, ＵＶカット: full-width ASCII as some brands type it."""
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in s)


# ------------------------------------------------------------------ generation


def product_name(rng, category):
    ja, latin, _, _ = CATEGORIES[category]
    if rng.random() < 0.12:
        words = [rng.choice(MODIFIERS_LATIN), rng.choice(latin)]
        suffix = rng.choice(SUFFIXES_LATIN)
        name = " ".join(words + ([suffix] if suffix else []))
        return full_width_latin(name) if rng.random() < 0.06 else name
    mods = []
    if rng.random() < 0.45:
        mods.append(rng.choice(MATERIALS))
    if rng.random() < 0.6:
        special = [m for prefix, ms in MODIFIERS_BY_CATEGORY.items() if category.startswith(prefix) for m in ms]
        pools = [MODIFIERS_KATAKANA, MODIFIERS_KANJI, MODIFIERS_HIRAGANA] + ([special] if special else [])
        pool = rng.choices(pools, [5, 4, 1, 3][:len(pools)])[0]
        mods.insert(0, rng.choice(pool))
    if not mods:
        mods.append(rng.choice(MODIFIERS_KATAKANA))
    # Compound the last modifier onto the item about a third of the time, as
    # catalogs do ("レザースニーカー" next to "レザー スニーカー").
    name = " ".join(mods) + ("" if rng.random() < 0.35 else " ") + rng.choice(ja)
    variant = rng.random()
    if variant < 0.03:
        return half_width_kana(name)
    if variant < 0.06:
        return full_width_latin(name)
    return name


def pick_sizes(rng, run):
    sizes = SIZE_RUNS[run]
    if len(sizes) == 1:
        return sizes
    lo = rng.randint(0, len(sizes) - 3)
    hi = rng.randint(lo + 2, len(sizes))
    return sizes[lo:hi]


def make_products(rng, sku_target):
    """Yields (brand index, product dict, [(color, code)], [size]) until sku_target SKUs."""
    cat_names = list(CATEGORIES)
    counters = [0] * len(BRANDS)
    n = 0
    while n < sku_target:
        b = rng.choices(range(len(BRANDS)), BRAND_WEIGHT)[0]
        counters[b] += 1
        category = rng.choices(cat_names, CATEGORY_WEIGHT)[0]
        _, _, run, (lo, hi) = CATEGORIES[category]
        product = {
            "product_id": "%s-%05d" % (BRANDS[b][2], counters[b]),
            "name": product_name(rng, category),
            "category": category,
            "price": (rng.randint(lo, hi) // 100) * 100 + rng.choice([90, 90, 90, 0]),
            "tags": sorted(rng.sample(TAGS, rng.choice([0, 1, 1, 2, 3]))),
        }
        attrs = {}
        if rng.random() < 0.4:
            attrs["season"] = rng.choice(SEASONS)
        if rng.random() < 0.4:
            attrs["origin"] = rng.choice(ORIGINS)
        if run == "apparel" and rng.random() < 0.5:
            attrs["fit"] = rng.choice(FITS)
        product["attributes"] = attrs
        colors = []
        for _ in range(rng.choice([1, 2, 2, 3, 4])):
            c = rng.choices(COLORS, COLOR_WEIGHT)[0]
            if c not in colors:
                colors.append(c)
        sizes = pick_sizes(rng, run)
        n += len(colors) * len(sizes)
        yield b, product, colors, sizes


def stock_for(rng, store_carries):
    """on_hand per location for one SKU: about 8% sold out everywhere, ~20% zero cells."""
    if rng.random() < 0.08:
        levels = {loc: 0 for loc in WAREHOUSES}
    else:
        base = rng.expovariate(1 / 30)
        levels = {}
        for loc, share in zip(WAREHOUSES, (1.0, 0.6, 0.45)):
            levels[loc] = 0 if rng.random() < 0.18 else int(base * share * rng.uniform(0.5, 1.5))
    if store_carries:
        levels["store-shibuya"] = rng.randint(0, 6)
    return levels


class Ledger:
    """The generator's own model of available stock, so that what it reserves exists."""

    def __init__(self):
        self.levels = {}  # (brand, sku) -> {loc: [on_hand, reserved, safety]}

    def set(self, key, loc, on_hand):
        self.levels.setdefault(key, {}).setdefault(loc, [0, 0, 0])[0] = on_hand

    def set_safety(self, key, loc, q):
        self.levels.setdefault(key, {}).setdefault(loc, [0, 0, 0])[2] = q

    def available(self, key, loc):
        on_hand, reserved, safety = self.levels.get(key, {}).get(loc, (0, 0, 0))
        return max(0, on_hand - reserved - safety)

    def channel_available(self, key, channel):
        _, _, locs, buffer = channel
        return max(0, sum(self.available(key, loc) for loc in locs) - buffer)

    def hold(self, key, channel, quantity):
        """Takes quantity from the most available locations first, as the server does,
        and returns where it was taken: [(location, quantity)]. The server may break
        ties differently; that cannot matter, since every later check sums over a
        channel's whole set of locations and nothing is ever held past available."""
        taken = []
        for loc in sorted(channel[2], key=lambda loc: (-self.available(key, loc), loc)):
            take = min(quantity, self.available(key, loc))
            if take:
                self.levels[key][loc][1] += take
                taken.append((loc, take))
                quantity -= take
        assert quantity == 0, "held more than available"
        return taken

    def release(self, key, taken, shipped):
        """Gives back what hold() took; when shipped, it also leaves on_hand."""
        for loc, q in taken:
            cell = self.levels[key][loc]
            cell[1] -= q
            if shipped:
                cell[0] -= q
            assert cell[1] >= 0 and cell[0] >= cell[1]


def dumps(obj):
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def write_ndjson(out, name, rows):
    path = os.path.join(out, name)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(dumps(row))
            f.write("\n")
    return path


def fake_ship_to(rng, i):
    return {
        "name": "%s %s" % (rng.choice(FAMILY), rng.choice(GIVEN)),
        "postal_code": "000-%04d" % (i % 10000),
        "prefecture": rng.choice(PREFECTURES),
        "address": "見本市 デモ町 %d-%d-%d（架空の住所）" % (rng.randint(1, 9), rng.randint(1, 30), rng.randint(1, 20)),
        "phone": "000-0000-%04d" % (i % 10000),
    }


def order_lines(rng, ledger, skus_of_brand, brand, channel, max_lines):
    """Up to max_lines distinct SKUs the channel can sell now, with quantities it can cover."""
    lines = []
    for _ in range(40):
        if len(lines) == max_lines:
            break
        sku = rng.choice(skus_of_brand)
        if any(line["sku"] == sku for line in lines):
            continue
        can = ledger.channel_available((brand, sku), channel)
        if can <= 0:
            continue
        lines.append({"sku": sku, "quantity": min(can, rng.choice([1, 1, 1, 2, 3]))})
    return lines


def generate(seed, sku_target, reservation_count, shipment_count):
    rng = random.Random(seed)
    files = {}
    files["brands.ndjson"] = [{"id": bid, "name": name} for bid, name, _ in BRANDS]
    files["locations.ndjson"] = [{"location": lid, "name": name, "kind": kind} for lid, name, kind in LOCATIONS]
    channels = {c[0]: c for c in CHANNELS}
    files["channels.ndjson"] = [
        {"brand": bid, "channel": cid, "name": name, "locations": locs, "buffer": buf}
        for bid, _, _ in BRANDS
        for cid, name, locs, buf in CHANNELS
    ]

    ledger = Ledger()
    skus, changes_by_brand = [], {bid: [] for bid, _, _ in BRANDS}
    skus_by_brand = {bid: [] for bid, _, _ in BRANDS}
    for b, product, colors, sizes in make_products(rng, sku_target):
        brand = BRANDS[b][0]
        store_carries = rng.random() < 0.15
        for color, code in colors:
            for size in sizes:
                sku = "%s-%s-%s" % (product["product_id"], code, size.replace(".", ""))
                row = {"brand": brand, "sku": sku, "product_id": product["product_id"], "name": product["name"],
                       "color": color, "size": size, "category": product["category"], "price": product["price"]}
                # Optional fields are left out when empty, as a brand's feed would.
                for field in ("tags", "attributes"):
                    if product[field]:
                        row[field] = product[field]
                skus.append(row)
                skus_by_brand[brand].append(sku)
                for loc, on_hand in stock_for(rng, store_carries).items():
                    # Zero cells are written only sometimes: an explicit 0 shows the
                    # location in the stock view ("sold out at osaka").
                    if on_hand or rng.random() < 0.2:
                        changes_by_brand[brand].append({"sku": sku, "location": loc, "op": "set", "on_hand": on_hand})
                        ledger.set((brand, sku), loc, on_hand)
                if rng.random() < 0.1:
                    q = rng.randint(1, 3)
                    changes_by_brand[brand].append({"sku": sku, "location": "tsukuba", "op": "set_safety_stock", "quantity": q})
                    ledger.set_safety((brand, sku), "tsukuba", q)
    files["skus.ndjson"] = skus

    stock = []
    batch_max = 1000  # the contract's limit per request
    for bid, _, _ in BRANDS:
        changes = changes_by_brand[bid]
        for i in range(0, len(changes), batch_max):
            stock.append({"brand": bid, "idempotency_key": "demo-stock-%s-%04d" % (bid, i // batch_max),
                          "changes": changes[i:i + batch_max]})
    files["stock_changes.ndjson"] = stock

    brand_ids = [bid for bid, _, _ in BRANDS]
    pick_brand = lambda: rng.choices(brand_ids, BRAND_WEIGHT)[0]  # noqa: E731
    pick_channel = lambda: channels[rng.choices([c for c, _ in ORDER_CHANNELS], [w for _, w in ORDER_CHANNELS])[0]]  # noqa: E731

    # Reservations: some stay open, some are later turned into shipments.
    reservations, for_shipment = [], []
    while len(reservations) < reservation_count:
        brand, channel = pick_brand(), pick_channel()
        lines = order_lines(rng, ledger, skus_by_brand[brand], brand, channel, rng.choice([1, 1, 2, 3]))
        if not lines:
            continue
        rid = "R-%s-%05d" % (BRAND_CODE[brand], len(reservations) + 1)
        ships = rng.random() < 0.4
        # Reservations a shipment will consume live for a day, so a slow replay cannot lose them.
        ttl = 86400 if ships else rng.choice([900, 1800, 3600, 7200, 86400])
        held = [(line["sku"], ledger.hold((brand, line["sku"]), channel, line["quantity"])) for line in lines]
        reservations.append({"brand": brand, "id": rid, "channel": channel[0], "ttl_seconds": ttl, "lines": lines})
        if ships:
            for_shipment.append((reservations[-1], held))
    files["reservations.ndjson"] = reservations

    shipments, statuses, progress = [], [], []
    flows = [["accepted"], ["accepted", "picking"], ["accepted", "picking", "packed"],
             ["accepted", "picking", "packed", "shipped"], ["accepted", "picking", "packed", "shipped", "delivered"],
             ["accepted", "cancelled"], ["accepted", "picking", "cancelled"]]
    flow_weight = [3, 2, 2, 5, 8, 1, 1]
    n = 0
    while len(shipments) < shipment_count:
        n += 1
        sid = "SH-%06d" % n
        order_ref = "EC-2026%02d%02d-%04d" % (rng.randint(10, 11), rng.randint(1, 28), n)
        if for_shipment and rng.random() < 0.5:
            res, held = for_shipment.pop(0)
            brand = res["brand"]
            body = {"brand": brand, "id": sid, "order_ref": order_ref, "channel": res["channel"], "reservation_id": res["id"]}
        else:
            brand, channel = pick_brand(), pick_channel()
            lines = order_lines(rng, ledger, skus_by_brand[brand], brand, channel, rng.choice([1, 1, 2, 3]))
            if not lines:
                continue
            held = [(line["sku"], ledger.hold((brand, line["sku"]), channel, line["quantity"])) for line in lines]
            body = {"brand": brand, "id": sid, "order_ref": order_ref, "channel": channel[0], "lines": lines}
        body["ship_to"] = fake_ship_to(rng, n)
        shipments.append(body)
        flow = rng.choices(flows, flow_weight)[0]
        carrier, digits = rng.choice(CARRIERS)
        tracking = "".join(str(rng.randint(0, 9)) for _ in range(digits))
        progress.append((brand, sid, flow, held, carrier, tracking))
    # Status changes are replayed after every shipment exists, so the stock a
    # cancellation frees is given back only now, never to a shipment created above.
    for brand, sid, flow, held, carrier, tracking in progress:
        for status in flow[1:]:
            update = {"brand": brand, "shipment": sid, "status": status}
            if status == "shipped":
                update["tracking_number"] = tracking
                update["carrier"] = carrier
            if status in ("shipped", "cancelled"):
                for sku, taken in held:
                    ledger.release((brand, sku), taken, shipped=status == "shipped")
            statuses.append(update)
    files["shipments.ndjson"] = shipments
    files["shipment_status.ndjson"] = statuses
    return files


# Replay order and the request each file's lines become. `path_ids` are the keys
# that go into the path (and are removed from the body); `headers` map keys of the
# line to request headers (also removed from the body).
MANIFEST = [
    ("brands.ndjson", "POST", "/v1/brands", [], {}),
    ("locations.ndjson", "PUT", "/v1/locations/{location}", ["location"], {}),
    ("channels.ndjson", "PUT", "/v1/brands/{brand}/channels/{channel}", ["brand", "channel"], {}),
    ("skus.ndjson", "PUT", "/v1/brands/{brand}/skus/{sku}", ["brand", "sku"], {}),
    ("stock_changes.ndjson", "POST", "/v1/brands/{brand}/stock/changes", ["brand"], {"idempotency_key": "Idempotency-Key"}),
    ("reservations.ndjson", "POST", "/v1/brands/{brand}/reservations", ["brand"], {}),
    ("shipments.ndjson", "POST", "/v1/brands/{brand}/shipments", ["brand"], {}),
    ("shipment_status.ndjson", "POST", "/v1/brands/{brand}/shipments/{shipment}/status", ["brand", "shipment"], {}),
]


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--skus", type=int, default=20000, help="at least this many SKUs (whole products are kept)")
    ap.add_argument("--reservations", type=int, default=300)
    ap.add_argument("--shipments", type=int, default=400)
    ap.add_argument("--out", default=os.path.join(here, "demo"))
    a = ap.parse_args()

    files = generate(a.seed, a.skus, a.reservations, a.shipments)
    os.makedirs(a.out, exist_ok=True)
    manifest = {"generator": "data/gen_demo.py", "seed": a.seed, "files": []}
    for name, method, path, path_ids, headers in MANIFEST:
        rows = files[name]
        write_ndjson(a.out, name, rows)
        manifest["files"].append({"file": name, "method": method, "path": path, "path_ids": path_ids,
                                  "headers": headers, "lines": len(rows)})
    with open(os.path.join(a.out, "manifest.json"), "w", encoding="utf-8", newline="\n") as f:
        f.write(json.dumps(manifest, ensure_ascii=False, indent=2))
        f.write("\n")
    for entry in manifest["files"]:
        print("%-24s %7d lines" % (entry["file"], entry["lines"]))


if __name__ == "__main__":
    main()
