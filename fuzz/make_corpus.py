#!/usr/bin/env python3
"""Writes the seed corpora fuzz/corpus/<target>/ from the documented formats
(/work/shared/PROVIDERS.md's bodies and test vectors, the unit tests'
fixtures, config/). Run from the repository root; the output is committed,
so this only needs running again when a seed is added. Channel seeds use
fuzz_channel.h's layout: flags byte, header line, query line, body."""
import base64, json, os, shutil, sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "fuzz", "corpus")
seeds = {}

def add(target, name, data):
    if isinstance(data, str):
        data = data.encode()
    seeds.setdefault(target, []).append((name, data))

def chan(target, name, body, header="", query="", flags=0):
    add(target, name, bytes([flags]) + header.encode() + b"\n" + query.encode() + b"\n" +
        (body.encode() if isinstance(body, str) else body))

# ---- WhatsApp (PROVIDERS.md) ----
WA_VEC = ('{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"value":'
          '{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881",'
          '"phone_number_id":"106540352242922"},"statuses":[{"id":"wamid.HBgLMTU1NTAxMjM0NTYVAgARGBI3",'
          '"status":"delivered","timestamp":"1750263773","recipient_id":"15550123456"}]},"field":"messages"}]}]}')
chan("whatsapp", "vector", WA_VEC,
     "sha256=9ac0e078fe5f6fdb2e2714e0ad14573213f1d3e409c2fc04be19c6d1d0f5059f")
chan("whatsapp", "handshake", "", "", "hub.mode=subscribe&hub.verify_token=verify-me&hub.challenge=1158201444", 1)
WA_FULL = {"object": "whatsapp_business_account", "entry": [{"id": "WABA_ID", "changes": [{"field": "messages",
  "value": {"messaging_product": "whatsapp",
   "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
   "statuses": [{"id": "wamid.X1", "status": "delivered", "timestamp": "1750263773", "recipient_id": "15550123456",
                 "conversation": {"id": "c1", "origin": {"type": "marketing"}},
                 "pricing": {"billable": True, "pricing_model": "PMP", "category": "marketing"}},
                {"id": "wamid.X2", "status": "failed", "timestamp": "1750263774", "recipient_id": "15550123456",
                 "errors": [{"code": 131026, "title": "undeliverable", "message": "m", "error_data": {"details": "d"}}]},
                {"id": "wamid.X3", "status": "read", "timestamp": "1750263775", "recipient_id": "15550123456",
                 "biz_opaque_callback_data": "0190f3a4c5d6e7f80123456789abcdef"}],
   "contacts": [{"profile": {"name": "Ana"}, "wa_id": "15550123456"}],
   "messages": [{"from": "15550123456", "id": "wamid.IN1", "timestamp": "1750263800", "type": "text", "text": {"body": "STOP"}},
                {"from": "15550123456", "id": "wamid.IN2", "timestamp": "1750263801", "type": "button",
                 "button": {"payload": "PAY_NOW", "text": "Pay"}, "context": {"from": "15550783881", "id": "wamid.X1"}},
                {"from": "15550123456", "id": "wamid.IN3", "timestamp": "1750263802", "type": "interactive",
                 "interactive": {"type": "button_reply", "button_reply": {"id": "yes", "title": "Yes"}}},
                {"from": "15550123456", "id": "wamid.IN4", "timestamp": "1750263803", "type": "interactive",
                 "interactive": {"type": "list_reply", "list_reply": {"id": "l1", "title": "One"}}}]}}]}]}
chan("whatsapp", "events", json.dumps(WA_FULL, separators=(",", ":")), "sha256=00")
chan("whatsapp", "send_ok", '{"messaging_product":"whatsapp","contacts":[{"input":"447911123456","wa_id":"447911123456"}],'
     '"messages":[{"id":"wamid.HBgM","message_status":"accepted"}]}', "+44 7911 123456", flags=2)
for code, status in ((131047, 400), (130429, 429), (131056, 400), (190, 401), (131000, 500), (131049, 400)):
    idx = [0, 200, 201, 202, 204, 400, 401, 403, 404, 409, 429, 500, 502, 503, 504, 302].index(status)
    chan("whatsapp", "send_err_%d" % code, '{"error":{"message":"(#%d) x","type":"OAuthException","code":%d,'
         '"error_data":{"messaging_product":"whatsapp","details":"d"},"fbtrace_id":"A"}}' % (code, code), "30", flags=idx << 1)
chan("whatsapp", "content_template", json.dumps({"type": "template", "template": {"name": "payment_reminder",
     "language": "en_GB", "parameters": ["Ana", "£120.00"], "header": {"type": "document", "url": "https://x/s.pdf",
     "filename": "statement.pdf"}, "buttons": [{"index": 0, "payload": "PAY_NOW"}]}}), "447911123456")
chan("whatsapp", "content_text", json.dumps({"type": "text", "text": "Hello", "buttons": [{"id": "yes", "title": "Yes"}],
     "options": {"preview_url": True}}), "+447911123456")

# ---- Twilio (PROVIDERS.md) ----
chan("twilio", "vector", "To=%2B18005551212&CallSid=CA1234567890ABCDE&From=%2B12349013030&Digits=1234&Caller=%2B12349013030",
     "0/KCTR6DLpKmkAf8muzZqo1nDgQ=")
SID = "SM0123456789abcdef0123456789abcdef"
for st in ("queued", "sending", "sent", "delivered", "undelivered", "failed", "read", "canceled"):
    extra = "&ErrorCode=30003" if st in ("undelivered", "failed") else ""
    chan("twilio", "status_" + st, "MessageSid=%s&SmsSid=%s&AccountSid=AC0123456789abcdef0123456789abcdef"
         "&From=%%2B15005550006&To=%%2B447911123456&MessageStatus=%s&ApiVersion=2010-04-01%s" % (SID, SID, st, extra),
         "idem-token-1")
for body, opt in (("STOP", ""), ("start", ""), ("HELP", "&OptOutType=HELP"), ("Hello+there%21", ""), ("unsubscribe", "&OptOutType=STOP")):
    chan("twilio", "inbound_" + body.split("%")[0].replace("+", "_"), "MessageSid=SMin1&From=%%2B447911123456&To=%%2B15005550006&Body=%s&NumMedia=0%s" % (body, opt), "t")
chan("twilio", "inbound_mms", "MessageSid=MMabc&From=%2B447911123456&To=%2B15005550006&Body=&NumMedia=1"
     "&MediaUrl0=https%3A%2F%2Fapi.twilio.com%2Fmedia%2FME1&MediaContentType0=image%2Fjpeg", "")
chan("twilio", "send_ok", '{"sid":"SM0123456789abcdef0123456789abcdef","status":"queued","num_segments":"1","to":"+447911123456",'
     '"from":"+15005550006","error_code":null,"error_message":null,"date_created":"Thu, 24 Aug 2023 05:01:45 +0000"}',
     "+44 7911 123456", flags=2 << 1)
for code, status in ((21211, 400), (20429, 429), (21610, 400), (30008, 500)):
    idx = [0, 200, 201, 202, 204, 400, 401, 403, 404, 409, 429, 500, 502, 503, 504, 302].index(status)
    chan("twilio", "send_err_%d" % code, '{"code":%d,"message":"The \'To\' number is not valid.","more_info":'
         '"https://www.twilio.com/docs/errors/%d","status":%d}' % (code, code, status), "Wed, 21 Oct 2026 07:28:00 GMT",
         flags=idx << 1)
chan("twilio", "lookup", '{"sid":"SM0123456789abcdef0123456789abcdef","status":"undelivered","error_code":30005,'
     '"error_message":"Unknown destination","date_updated":"Thu, 24 Aug 2023 05:01:45 +0000"}', "", flags=1 << 1)
chan("twilio", "content", json.dumps({"type": "text", "text": "Your code: 12 & 34", "options": {"validity_period": 600}}), "+15550100001")

# ---- Telegram (PROVIDERS.md) ----
chan("telegram", "message", json.dumps({"update_id": 10001, "message": {"message_id": 7, "from": {"id": 42, "first_name": "Ana"},
     "chat": {"id": 123456789, "type": "private"}, "date": 1750263800, "text": "/start",
     "reply_to_message": {"message_id": 5, "chat": {"id": 123456789}}}}), "tg-Secret_42")
chan("telegram", "callback", json.dumps({"update_id": 10002, "callback_query": {"id": "4382bfdwdsb323b2d9", "from": {"id": 42},
     "message": {"message_id": 42, "chat": {"id": 123456789}}, "data": "h1:0190f3a4c5d6e7f80123456789abcdef:pay"}}), "tg-Secret_42")
chan("telegram", "send_ok", '{"ok":true,"result":{"message_id":42,"chat":{"id":123456789},"date":1750263800}}', "123456789", flags=1 << 1)
chan("telegram", "send_429", '{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 35",'
     '"parameters":{"retry_after":35}}', "-100123", flags=10 << 1)
chan("telegram", "send_migrate", '{"ok":false,"error_code":400,"description":"Bad Request: group chat was upgraded",'
     '"parameters":{"migrate_to_chat_id":-1001234567890}}', "-123", flags=5 << 1)
chan("telegram", "send_blocked", '{"ok":false,"error_code":403,"description":"Forbidden: bot was blocked by the user"}', "@channel", flags=7 << 1)
chan("telegram", "content", json.dumps({"type": "text", "text": "<b>Pay</b>", "buttons": [{"id": "pay", "title": "Pay now"}],
     "options": {"parse_mode": "HTML"}}), "123456789")

# ---- RBM (PROVIDERS.md) ----
RBM_DATA = ("eyJzZW5kZXJQaG9uZU51bWJlciI6IisxNTU1MDEyMzQ1NiIsImV2ZW50VHlwZSI6IkRFTElWRVJFRCIsImV2ZW50SWQiOiJNeEFCQyIsIm1lc3NhZ2VJ"
            "ZCI6IjBmOWE2YzFlLTRjNzctNGE0ZS05ZDNlLTJiMWY3YTVkNmUwMSIsInNlbmRUaW1lIjoiMjAyNi0wMS0xNVQxMDowMDowMC4xMjM0NTZaIiwiYWdl"
            "bnRJZCI6ImhlcmFsZF9kZW1vX2FnZW50In0=")
def rbm_env(ev):
    return json.dumps({"message": {"data": base64.b64encode(json.dumps(ev).encode()).decode(), "messageId": "1",
                       "publishTime": "2026-01-15T10:00:00.5Z"}, "subscription": "projects/p/subscriptions/s"})
chan("rbm", "vector", json.dumps({"message": {"data": RBM_DATA, "messageId": "1", "publishTime": "2026-01-15T10:00:00Z"},
     "subscription": "projects/p/subscriptions/s"}),
     "KCGaIz53f71eIEwwsrk9nzo2mr4s6Lwyek//IAi+nra+hO5uKpkRRRh//NQQPCmT/R4sDIG/08SMM4h1iQP7HA==")
chan("rbm", "handshake", '{"clientToken":"SJENCPGJESMGUFPY","secret":"s3cr3t"}')
chan("rbm", "read", rbm_env({"senderPhoneNumber": "+15550123456", "eventType": "READ", "eventId": "E2",
     "messageId": "0f9a6c1e-4c77-4a4e-9d3e-2b1f7a5d6e01", "sendTime": "2026-01-15T10:00:01Z", "agentId": "herald_demo_agent"}), "x")
chan("rbm", "text", rbm_env({"senderPhoneNumber": "+15550123456", "messageId": "MsU1", "sendTime": "2026-01-15T10:00:02Z", "text": "STOP"}), "x")
chan("rbm", "suggestion", rbm_env({"senderPhoneNumber": "+15550123456", "messageId": "MsU2", "sendTime": "2026-01-15T10:00:03Z",
     "suggestionResponse": {"postbackData": "0190f3a4c5d6e7f80123456789abcdef:yes", "text": "Yes", "type": "REPLY"}}), "x")
chan("rbm", "send_ok", '{"name":"phones/+15550123456/agentMessages/0f9a6c1e-4c77-4a4e-9d3e-2b1f7a5d6e01","sendTime":"2026-01-15T10:00:00Z"}',
     "+1 555 012 3456", flags=1 << 1)
for code, st, idx in ((404, "NOT_FOUND", 8), (429, "RESOURCE_EXHAUSTED", 10), (503, "UNAVAILABLE", 13), (400, "INVALID_ARGUMENT", 5), (409, "ALREADY_EXISTS", 9)):
    chan("rbm", "send_%d" % code, '{"error":{"code":%d,"message":"m","status":"%s"}}' % (code, st), "12", flags=idx << 1)
chan("rbm", "content_card", json.dumps({"type": "card", "card": {"title": "T", "description": "D", "media_url": "https://x/i.png",
     "buttons": [{"id": "y", "title": "Yes"}], "actions": [{"title": "Call", "dial": "+15550100"}, {"title": "Web", "url": "https://x"}]},
     "options": {"ttl": "86400s"}}), "+15550123456")
chan("rbm", "content_carousel", json.dumps({"type": "carousel", "cards": [{"title": "A", "media_url": "https://x/a.png"},
     {"title": "B", "description": "b"}]}), "+15550123456")


# ---- template (fuzz_template.c: body, then NUL-separated parameters) ----
for name, parts in (("reminder", ["Hi {{1}}, your payment of {{2}} is due on {{3}}.", "Ana", "£120.00", "2026-12-24"]),
                    ("otp", ["{{1}} is your Demo Bank code.", "123456"]),
                    ("none", ["Plain text, no placeholders."]),
                    ("repeat", ["{{1}} {{1}} {{2}}", "a", "b"]),
                    ("gsm_ext", ["{{1}} costs 5€ [x] {{2}}", "^{}\\~|", "😀 emoji"]),
                    ("malformed", ["{{0}} {{ 1}} {{1}", "x"]),
                    ("gap", ["{{1}} {{3}}", "a", "b", "c"]),
                    ("max", ["{{100}}"] + ["p%d" % i for i in range(100)])):
    add("template", name, "\0".join(parts))

# ---- config (fuzz_config.c: a YAML file) ----
add("config", "herald_yaml", open(os.path.join(ROOT, "config", "herald.yaml"), "rb").read())
add("config", "json", json.dumps({"server": {"listen": "127.0.0.1:0", "threads": "2", "allowed_origins": ["https://proxy.example:8443"]},
    "store": {"driver": "sqlite", "path": ":memory:"}, "tenants": [{"id": "acme", "secret_env_prefix": "ACME_",
    "secret_file_dir": "/run/secrets/acme/"}, {"id": "beta-bank"}]}))
add("config", "anchors", "defaults: &d\n  threads: 4\n  max_batch: 100\nserver:\n  <<: *d\n  listen: \"[::1]:8080\"\n"
    "tenants:\n  - {id: t1, name: 'One'}\n  - id: t2\n    secret_file_dir: /etc/herald/t2/\n")
add("config", "flow", "{server: {threads: 0x10, max_body_bytes: 1e3}, store: {message_retention_days: ~}, callbacks: {retention_hours: yes}}\n")
add("config", "multi_doc", "---\nserver: {}\n---\nstore: {}\n...\n")
add("config", "tags", "server: !!map {threads: !!str 2}\nstore:\n  path: |\n    multi\n    line\n  url: >-\n    folded\n    text\n")

# ---- csv (fuzz_csv.c: the file) and xlsx (fuzz_xlsx.c: mode byte, then a part or a zip) ----
FIX = os.path.join(ROOT, "tests", "fixtures", "sheets")
for f in sorted(os.listdir(FIX)):
    data = open(os.path.join(FIX, f), "rb").read()
    if f.endswith(".csv"):
        add("csv", f[:-4], data)
    elif f.endswith(".xlsx") and len(data) <= 200000:
        add("xlsx", f[:-5], b"\x04" + data)  # mode 5: a whole zip
add("csv", "quoted", 'phone,name,amount\r\n"+44 7911 123456","Smith, ""Ana""",£120.00\r\n+447911123457,"multi\nline",4.47911E+11\r\n')
add("csv", "bom_semicolon", b"\xef\xbb\xbfphone;name\n+15550100;B\xc3\xa9a\n")
add("xlsx", "worksheet", b"\x00" + b'<worksheet><sheetData><row r="1"><c r="A1" t="inlineStr"><is><t>phone</t></is></c>'
    b'<c r="B1" t="s"><v>0</v></c></row><row r="3"><c r="A3"><v>447911123456</v></c><c r="C3" t="b"><v>1</v></c>'
    b'<c r="D3" t="e"><v>#N/A</v></c><c r="E3" t="str"><f>A3</f><v>x</v></c><c r="F3" s="1"><v>45356.25</v></c>'
    b'<c r="G3" t="d"><v>2024-03-05T10:00:00</v></c></row></sheetData></worksheet>')
add("xlsx", "sst", b"\x01" + b'<sst count="3" uniqueCount="3"><si><t xml:space="preserve"> a </t></si><si><r><t>b</t></r>'
    b'<r><rPr><b/></rPr><t>c_x000D_</t></r><rPh><t>ignored</t></rPh></si><si><t/></si></sst>')
add("xlsx", "styles", b"\x02" + b'<styleSheet><numFmts count="2"><numFmt numFmtId="164" formatCode="[h]:mm:ss"/>'
    b'<numFmt numFmtId="165" formatCode="&quot;d&quot;0.00"/></numFmts><cellXfs count="3"><xf numFmtId="0"/>'
    b'<xf numFmtId="164" applyNumberFormat="1"/><xf numFmtId="165"/></cellXfs></styleSheet>')
add("xlsx", "workbook", b"\x03" + b'<workbook xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">'
    b'<workbookPr date1904="1"/><sheets><sheet name="S" sheetId="1" r:id="a"/><sheet name="T" r:id="b"/></sheets></workbook>')

# ---- jwt (fuzz_jwt.c: mode byte, then a token, header\npayload, payload or a JWKS) ----
claims = {"sub": "u1", "tenant": "t1", "unit": "cards", "aud": "herald", "iss": "https://idp.example",
          "exp": 4102444800, "nbf": 1700000000, "scope": "messages:send messages:read"}
add("jwt", "hs256_ok", b"\x01" + b'{"alg":"HS256","typ":"JWT"}\n' + json.dumps(claims).encode())
add("jwt", "hs256_aud_list", b"\x01" + b'{"alg":"HS256"}\n' + json.dumps(dict(claims, aud=["other", "herald"], scope=["admin", "x"])).encode())
add("jwt", "hs256_expired", b"\x01" + b'{"alg":"HS256"}\n' + json.dumps(dict(claims, exp=1000)).encode())
add("jwt", "hs256_t2", b"\x02" + b'{"alg":"HS256","kid":"t2"}\n' + json.dumps(dict(claims, tenant="t2")).encode())
add("jwt", "hs256_t2_server_key", b"\x01" + b'{"alg":"HS256"}\n' + json.dumps(dict(claims, tenant="t2")).encode())
add("jwt", "es256_ok", b"\x03" + json.dumps(claims).encode())
add("jwt", "es256_float_exp", b"\x03" + json.dumps(dict(claims, exp=4102444800.5, nbf="soon")).encode())
def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=")
for name, hdr in (("none", b'{"alg":"none"}'), ("rs256_confusion", b'{"alg":"RS256","kid":"r1"}'),
                  ("enc", b'{"alg":"HS256","enc":"A128GCM"}'), ("hs512", b'{"alg":"HS512"}')):
    add("jwt", "raw_" + name, b"\x00" + b64u(hdr) + b"." + b64u(json.dumps(claims).encode()) + b"." + b64u(b"sig"))
add("jwt", "raw_two_parts", b"\x00eyJhbGciOiJIUzI1NiJ9.eyJ9")
add("jwt", "jwks", b"\x04" + json.dumps({"keys": [
    {"kty": "RSA", "kid": "r9", "use": "sig", "alg": "RS256", "n": b64u(bytes(range(1, 256)) + b"\x01").decode(), "e": "AQAB"},
    {"kty": "EC", "crv": "P-256", "kid": "e9", "x": b64u(bytes(32)).decode(), "y": b64u(bytes(range(32))).decode()},
    {"kty": "oct", "k": "c2VjcmV0"}, {"kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB"}]}).encode())

# ---- messages (fuzz_messages.c: flags byte (bit 0 batch, bits 1-2 unit), then the body) ----
def msg(name, body, batch=False, unit=0):
    add("messages", name, bytes([(1 if batch else 0) | unit << 1]) + json.dumps(body).encode())
msg("text_wa", {"channel": "whatsapp", "to": "+44 7911 123456", "text": "Hello", "buttons": [{"id": "yes", "title": "Yes"}],
    "priority": "transactional", "delivery_policy": "at_most_once", "ttl_seconds": 3600})
msg("template_wa", {"channel": "whatsapp", "account": "wa1", "to": "447911123456", "template": {"name": "payment_reminder",
    "language": "en_GB", "parameters": ["Ana", "£120.00", "24 Dec"], "header": {"type": "document", "url": "https://x.example/s.pdf",
    "filename": "statement.pdf"}, "buttons": [{"index": 0, "payload": "PAY_NOW"}, {"index": 1, "text": "inv/123"}]},
    "callback_url": "https://client.example/cb"})
msg("template_fallback", {"channel": "whatsapp", "to": "+447911123456", "template": {"name": "otp", "language": "en", "parameters": ["123456"]}})
msg("sms_route", {"channel": "sms", "to": "+15550100001", "text": "Your code: 12 & 34 €", "ttl_seconds": 86400,
    "route": ["sms", {"channel": "whatsapp", "account": "wa1"}], "fallback_after_s": 600, "fallback_text": "code"}, unit=1)
msg("sms_unit", {"channel": "sms", "account": "cards-sms", "to": "+15550100001", "template": {"name": "otp", "language": "en",
    "parameters": ["42"]}}, unit=1)
msg("rcs_card", {"channel": "rcs", "to": "+15550123456", "card": {"title": "T", "description": "D", "media_url": "https://x.example/i.png",
    "buttons": [{"id": "y", "title": "Yes"}], "actions": [{"title": "Call", "dial": "+15550100"}, {"title": "Web", "url": "https://x.example"}]},
    "options": {"ttl": "86400s"}, "route": ["rcs", "sms"]})
msg("rcs_carousel", {"channel": "rcs", "to": "+15550123456", "carousel": {"cards": [{"title": "A", "media_url": "https://x.example/a.png"},
    {"title": "B", "description": "b"}]}})
msg("rcs_template", {"channel": "rcs", "to": "+15550123456", "template": {"name": "promo", "language": "en", "parameters": ["Ana", "x"],
    "header": {"type": "text", "text": "Hi"}}})
msg("tg_doc", {"channel": "telegram", "to": "123456789", "document": {"url": "https://x.example/d.pdf", "filename": "d.pdf", "caption": "c"},
    "options": {"parse_mode": "HTML"}, "mode": "async"})
msg("tg_image", {"channel": "telegram", "to": "@chan", "image": {"url": "https://x.example/i.png", "caption": "c"}, "mode": "sync", "timeout_ms": 500})
msg("other_tenant", {"channel": "whatsapp", "account": "wa2", "to": "447911123456", "text": "x"})
msg("batch", {"priority": "bulk", "callback_url": "https://client.example/b", "messages": [
    {"channel": "whatsapp", "to": "447911123456", "text": "a"}, {"channel": "sms", "to": "+15550100001", "text": "b", "priority": "transactional"},
    {"channel": "whatsapp", "to": "+1 555 0100", "template": {"name": "hello", "language": "en"}}]}, batch=True)
msg("tg_template_fallback", {"channel": "telegram", "to": "42", "template": {"name": "otp", "language": "en", "parameters": ["1"]}})
msg("wa_expires", {"channel": "whatsapp", "to": "447911123456", "image": {"url": "https://x.example/i.png"}, "expires_at": "2026-12-24T09:05:00Z"})
msg("batch_bad_item", {"messages": [{"channel": "whatsapp", "to": "447911123456", "text": "a"}, {"channel": "fax", "to": "1"}, 3]}, batch=True, unit=2)

def write():
    for target, items in seeds.items():
        d = os.path.join(OUT, target)
        os.makedirs(d, exist_ok=True)
        for name, data in items:
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)

if __name__ == "__main__":
    write()
