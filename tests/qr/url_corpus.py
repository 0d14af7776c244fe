"""Hand-built, labelled quishing corpus (issue 20): URLs and EMVCo/FPS payment payloads a QR code might carry.

Written by hand for the tests and the benchmark, not scraped: benign Hong Kong bank, payment and government
links (and ordinary sites that are on no allow-list), and the tricks a pasted-over code uses: http-only, '@'
user info, raw IPs (also decimal/hex/octal IPv4), odd ports, shorteners, typosquats, brand look-alike
subdomains, punycode/IDN homoglyphs, redirects, non-web schemes. A few cases are hard on purpose and are
labelled by what they are, not by what the checker says: real sites of a protected brand that are missing from
the allow-list (false positives), and brand-free phishing domains no static rule can tell (false negatives).
The domains under `evil.example`, `.top`, `.xyz` and the 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24 and
2001:db8:: addresses are made up or reserved for documentation.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

from sampan.qr.emv import ExpectedMerchant, encode_emv

Label = Literal["benign", "malicious"]


class UrlCase(NamedTuple):
    url: str
    label: Label
    reason: str


class PaymentCase(NamedTuple):
    payload: str
    expected: ExpectedMerchant  # without a proxy: a name-only expectation
    label: Label
    reason: str


def _b(url: str, reason: str) -> UrlCase:
    return UrlCase(url, "benign", reason)


def _m(url: str, reason: str) -> UrlCase:
    return UrlCase(url, "malicious", reason)


BENIGN: list[UrlCase] = [
    _b("https://www.hsbc.com.hk/", "HSBC HK home"),
    _b("https://www.hsbc.com.hk/personal/banking/", "HSBC HK page"),
    _b("https://www.hsbc.com.hk/zh-hk/", "HSBC HK Chinese page"),
    _b("https://internetbanking.hsbc.com.hk/", "subdomain of an allow-listed bank"),
    _b("https://www.hsbc.com/", "HSBC group"),
    _b("https://www.hsbcnet.com/", "HSBCnet, allow-listed"),
    _b("https://www.bochk.com/en/home.html", "BOCHK home"),
    _b("https://www.bochk.com/tc/home.html", "BOCHK Chinese"),
    _b("https://its.bochk.com/", "BOCHK subdomain"),
    _b("https://www.boc.cn/", "Bank of China mainland, allow-listed"),
    _b("https://www.hangseng.com/en-hk/home/", "Hang Seng"),
    _b("https://e-banking.hangseng.com/", "Hang Seng e-banking subdomain"),
    _b("https://www.sc.com/hk/", "Standard Chartered HK"),
    _b("https://www.sc.com/hk/zh/", "Standard Chartered HK Chinese"),
    _b("https://www.bea.com/eng/", "Bank of East Asia"),
    _b("https://www.dbs.com.hk/personal/default.page", "DBS HK"),
    _b("https://www.citibank.com.hk/", "Citibank HK"),
    _b("https://www.gov.hk/en/residents/", "GovHK"),
    _b("https://www.hkma.gov.hk/eng/", "HKMA"),
    _b("https://www.ird.gov.hk/eng/", "Inland Revenue, under gov.hk"),
    _b("https://www.info.gov.hk/gia/general/today.htm", "press releases, under gov.hk"),
    _b("https://www.police.gov.hk/", "police, under gov.hk"),
    _b("https://www.immd.gov.hk/", "Immigration, under gov.hk"),
    _b("https://www.td.gov.hk/", "Transport Department, under gov.hk"),
    _b("https://www.1823.gov.hk/", "1823 hotline, numeric label under gov.hk"),
    _b("https://www.fps.hk/en/", "FPS"),
    _b("https://www.hkicl.com.hk/", "HKICL"),
    _b("https://www.octopus.com.hk/en/", "Octopus"),
    _b("https://www.hkex.com.hk/", "HKEX"),
    _b("https://www.sfc.hk/", "SFC"),
    _b("https://www.mtr.com.hk/", "MTR"),
    _b("https://www.hongkongpost.hk/", "Hongkong Post"),
    _b("https://www.clp.com.hk/", "CLP"),
    _b("https://www.hkelectric.com/", "HK Electric"),
    _b("https://www.towngas.com/", "Towngas"),
    _b("HTTPS://WWW.HSBC.COM.HK/", "upper case is the same URL"),
    _b("https://www.hsbc.com.hk:443/", "explicit default port"),
    _b("https://www.hsbc.com.hk./", "trailing dot (fully qualified)"),
    _b("https://www.hangseng.com/en-hk/personal/?utm_source=qr&utm_medium=poster", "tracking parameters"),
    _b("https://www.hsbc.com.hk/login?returnUrl=https://www.hsbc.com.hk/accounts", "redirect to itself"),
    _b("  https://www.bochk.com/  ", "surrounding spaces from a scanner"),
    _b("https://www.wikipedia.org/", "ordinary site, not on the allow-list"),
    _b("https://en.wikipedia.org/wiki/HSBC", "brand word in an unrelated site's path"),
    _b("https://www.scmp.com/", "news site"),
    _b("https://www.hk01.com/", "news site"),
    _b("https://www.python.org/", "ordinary site"),
    _b("https://github.com/", "ordinary site"),
    _b("https://www.hku.hk/", "university"),
    _b("https://www.cuhk.edu.hk/", "university"),
    _b("https://www.polyu.edu.hk/", "university"),
    _b("https://www.openrice.com/", "restaurant guide"),
    _b("https://www.hktvmall.com/", "shop"),
    _b("https://www.cathaypacific.com/", "airline"),
    _b("https://www.hkbn.net/", "ISP (4 letters like hsbc, 2 edits away)"),
    _b("https://www.apple.com/hk/", "ordinary site"),
    _b("https://www.7-eleven.com.hk/", "shop with digits and hyphen"),
    _b("https://www.parknshop.com/", "supermarket"),
    _b("https://www.watsons.com.hk/", "pharmacy"),
    _b("https://www.bbc.co.uk/news", "news, other suffix"),
    _b("https://www.google.com/url?q=https://www.wikipedia.org/", "redirect to an unflagged site"),
    _b("https://www.政府.香港/", "Chinese-script government suffix (allow-listed like gov.hk)"),
    _b("https://例子.香港/", "made-up one-script Chinese IDN under .香港 (benign shape, not allow-listed)"),
    _b("https://xn--fsqu00a.xn--j6w193g/", "the same made-up IDN in punycode"),
    _b("https://xn--strae-oqa.de/", "genuine IDN with a deviation character (ß); IDNA 2003 called it malformed"),
    _b("https://straße.de/", "the same host in Unicode (a browser opens xn--strae-oqa.de)"),
    _b("https://www.hsbc.com.hk/redirect?url=https://www.hsbc.com.hk/personal", "allow-listed site redirecting to "
       "itself"),
    _b("https://www.hsbc.co.uk/", "HARD: a real HSBC site missing from the allow-list (expected false positive)"),
    _b("https://www.hangsengindexes.com/", "HARD: real Hang Seng Indexes, not allow-listed (expected false positive)"),
]

MALICIOUS: list[UrlCase] = [
    # http only
    _m("http://www.hsbc.com.hk/login", "http, not https"),
    _m("http://www.bochk.com/", "http, not https"),
    _m("http://www.gov.hk/", "http, not https"),
    _m("http://pay.fps.hk/", "http, not https"),
    _m("http://www.hangseng.com/en-hk/", "http, not https"),
    # '@' user info
    _m("https://www.hsbc.com.hk@evil.example/", "'@': real host evil.example"),
    _m("https://www.bochk.com:login@203.0.113.7/", "'@' and a raw IP"),
    _m("https://gov.hk@phish.top/tax-refund", "'@': real host phish.top"),
    _m("https://www.hangseng.com@bit.ly/abc", "'@' to a shortener"),
    _m("https://secure.hsbc.com.hk%40evil.example/", "encoded '@' inside the host"),
    _m("https://evil.example\\@www.hsbc.com.hk/", "backslash: browsers go to evil.example"),
    # raw IP hosts
    _m("https://203.0.113.7/hsbc/login", "raw IPv4"),
    _m("https://198.51.100.23:8443/", "raw IPv4 and odd port"),
    _m("https://3405803783/", "decimal IPv4 (203.0.113.7)"),
    _m("https://0xcb.0x0.0x71.0x7/", "hex IPv4"),
    _m("https://0313.0.0161.07/", "octal IPv4"),
    _m("https://203.113.7/", "three-part IPv4 short form"),
    _m("https://127.1/", "two-part IPv4 short form"),
    _m("https://[2001:db8::1]/login", "raw IPv6"),
    _m("https://[::ffff:203.0.113.7]/", "IPv4-mapped IPv6"),
    _m("http://192.168.1.1/pay", "private IPv4 over http"),
    # odd ports
    _m("https://www.hsbc.com.hk:8443/", "non-default port on a bank host"),
    _m("https://www.gov.hk:8080/", "non-default port"),
    _m("https://www.bochk.com:444/login", "non-default port"),
    _m("https://www.hangseng.com:8888/", "non-default port"),
    _m("https://www.fps.hk:4443/pay", "non-default port"),
    # shorteners
    _m("https://bit.ly/3xHsbcHK", "shortener hides the destination"),
    _m("https://tinyurl.com/hk-tax-refund", "shortener"),
    _m("https://t.co/AbC123", "shortener"),
    _m("https://goo.gl/abcd", "shortener"),
    _m("https://is.gd/fpspay", "shortener"),
    _m("https://cutt.ly/parkingHK", "shortener"),
    _m("https://rb.gy/x1y2z3", "shortener"),
    _m("https://qrco.de/bdXYZ", "QR redirect service"),
    # typosquats
    _m("https://www.hsbcc.com.hk/", "one letter added"),
    _m("https://www.hbsc.com.hk/", "transposition"),
    _m("https://www.hsbc-hk.com/", "brand plus a token"),
    _m("https://www.hsbchk.com/", "brand plus suffix letters"),
    _m("https://www.bochk-online.com/", "brand plus a token"),
    _m("https://www.bockh.com/", "transposition"),
    _m("https://www.b0chk.com/", "digit zero for o"),
    _m("https://www.hangsang.com/", "one letter changed"),
    _m("https://www.hengseng.com/", "one letter changed"),
    _m("https://www.hangseng-bank.com/", "brand plus a token"),
    _m("https://www.hangsegn.com/", "transposition"),
    _m("https://www.dbs-hk.com/", "short brand as a token"),
    _m("https://www.citibank-hk.com/", "brand plus a token"),
    _m("https://www.cittibank.com.hk/", "letter doubled"),
    _m("https://www.octopus-card.com.hk/", "brand plus a token"),
    _m("https://www.0ctopus.com.hk/", "digit zero for o"),
    _m("https://www.hkpost.com/", "brand on another suffix"),
    _m("https://www.hongkongpost-hk.com/", "brand plus a token"),
    _m("https://www.hongkonqpost.hk/", "q for g"),
    _m("https://www.hsbc.net/", "brand on another suffix"),
    _m("https://fps-hk.com/pay", "brand domain folded into a label"),
    _m("https://govhk.site/", "brand domain folded into a label"),
    _m("https://gov-hk.top/", "brand domain folded into a label"),
    _m("https://www-gov-hk.info/", "brand domain inside a label"),
    _m("https://ird-gov-hk.com/taxrefund", "brand domain inside a label"),
    # look-alike subdomains
    _m("https://www.hsbc.com.hk.evil.example/", "brand domain as a subdomain"),
    _m("https://hsbc.com.hk.secure-login.top/", "brand domain as a subdomain"),
    _m("https://bochk.com.verify-account.xyz/", "brand domain as a subdomain"),
    _m("https://www.hangseng.com.hk-login.info/", "brand domain as a subdomain"),
    _m("https://www.ird.gov.hk.evil.example/", "government domain as a subdomain"),
    _m("https://tax-refund.gov.hk.example.net/", "government domain as a subdomain"),
    _m("https://hsbc.com-hk.info/", "brand label as a subdomain of com-hk.info"),
    _m("https://hsbc.com.hk-secure.net/", "brand label as a subdomain"),
    _m("https://www.hsbc.com.hk.co/", "brand label as a subdomain of hk.co"),
    # punycode / IDN homoglyphs
    _m("https://һѕbс.com.hk/", "Cyrillic shha, dze, es"),
    _m("https://xn--hsb-6ed.com.hk/", "punycode of hsb + Cyrillic es"),
    _m("https://bосhk.com/", "Cyrillic o and es"),
    _m("https://xn--hngseng-2fg.com/", "punycode of Cyrillic a in hangseng"),
    _m("https://hangsеng.com/", "Cyrillic ie"),
    _m("https://ѕс.com/hk/", "whole-script Cyrillic sc"),
    _m("https://www.gοv.hk/", "Greek omicron in gov"),
    _m("https://fρs.hk/", "Greek rho in fps"),
    _m("https://cіtibank.com.hk/", "Cyrillic i"),
    _m("https://www.dbѕ.com.hk/", "Cyrillic dze"),
    _m("https://hsbç.com.hk/", "c with cedilla"),
    _m("https://ｈｓｂｃ-ｈｋ.com/", "full-width letters spelling hsbc-hk.com"),
    _m("https://xn--80ak6aa92e.com/", "whole-script Cyrillic 'apple'"),
    # redirects, paths, schemes, odd syntax
    _m("https://www.google.com/url?q=http://203.0.113.7/pay", "open redirect to a raw IP"),
    _m("https://www.hsbc.com.hk/redirect?url=https://hsbc-login.top/", "bank redirect to a look-alike"),
    _m("https://evil.example/www.hsbc.com.hk/login", "brand domain in the path"),
    _m("javascript:alert(document.cookie)", "script scheme"),
    _m("data:text/html,<script>location='https://evil.example'</script>", "data scheme"),
    _m("file:///etc/passwd", "file scheme"),
    _m("intent://scan/#Intent;scheme=zxing;package=evil;end", "Android intent scheme"),
    _m("https:/\\evil.example/", "odd slashes"),
    _m("https:evil.example/", "no slashes"),
    _m("https://%68%73%62%63.com.hk.evil.example/", "percent-encoded brand subdomain"),
    _m("https://www.hsbc.com.hk%2eevil.example/", "encoded dot: host is www.hsbc.com.hk.evil.example"),
    _m("www.hsbc-secure.com/login", "no scheme and a brand token"),
    _m("https://hk-octopus-topup.com/", "brand inside a label"),
    _m("https://www.hsbc.com.hk:8443@203.0.113.9/", "port-like user info and a raw IP"),
    _m("https://www.hsbc.com.hk/\u202ekpa.evil.example", "right-to-left override makes the text read differently"),
    _m("https://hs\u200bbc-login.top/", "zero-width space inside the host"),
    # issue 20 review (REVQ-1, -10, -11, -12)
    _m("https://ʜsʙc.com.hk/login", "Latin small capitals read as HSBC"),
    _m("https://ʜᴀɴɢsᴇɴɢ.com/", "small-capital Hang Seng"),
    _m("https://hsbc.com.hk\u2044login.evil.example/", "fraction slash: 'hsbc.com.hk/login' is a subdomain label"),
    _m("https://bochk.com\u2215secure.evil.example/", "division slash after a brand domain"),
    _m("https://hangseng.com\u29f8login.evil.example/", "big solidus after a brand domain"),
    _m("https://www.hsbc.com.hk/redirect?url=//evil.example/", "allow-listed open redirect, protocol-relative"),
    _m("https://www.hsbc.com.hk/redirect?url=https%253A%252F%252Fevil.example%252F", "double-encoded redirect"),
    _m("https://hangßeng.com/", "sharp s: browsers open xn--hangeng-..., IDNA 2003 would read hangsseng"),
    # hard: no brand and no trick
    _m("https://pay-parking-hk.com/", "HARD: new phishing domain, no brand, no trick (expected false negative)"),
    _m("https://secure-banking-login.top/", "HARD: new phishing domain, no brand (expected false negative)"),
]

URL_CORPUS: list[UrlCase] = BENIGN + MALICIOUS


def _fps(name: str, fps_id: str, *, city: str = "Hong Kong", amount: str | None = None,
         bank: str | None = None) -> str:
    account = "0012hk.com.hkicl" + (f"01{len(bank):02d}{bank}" if bank else "") + f"02{len(fps_id):02d}{fps_id}"
    fields = [("00", "01"), ("01", "12" if amount else "11"), ("26", account), ("52", "5812"), ("53", "344")]
    if amount:
        fields.append(("54", amount))
    fields += [("58", "HK"), ("59", name), ("60", city)]
    return encode_emv(fields)


def _fps_mobile(name: str, mobile: str, bank: str) -> str:
    account = "0012hk.com.hkicl" + f"01{len(bank):02d}{bank}" + f"03{len(mobile):02d}{mobile}"
    return encode_emv([("00", "01"), ("01", "11"), ("26", account), ("52", "0000"), ("53", "344"), ("58", "HK"),
                       ("59", name), ("60", "HK")])


def _tlv(*pairs: tuple[str, str]) -> str:
    return "".join(f"{tag}{len(value):02d}{value}" for tag, value in pairs)


def _acct(*subs: tuple[str, str]) -> str:
    """An FPS merchant account template with the given proxy sub-tags (bank 004)."""
    return _tlv(("00", "hk.com.hkicl"), ("01", "004"), *subs)


def _fps_with(accounts: list[tuple[str, str]], name: str, *extra: tuple[str, str]) -> str:
    return encode_emv([("00", "01"), ("01", "11"), *accounts, ("52", "5812"), ("53", "344"), ("58", "HK"),
                       ("59", name), ("60", "Hong Kong"), *extra])


_WING_KEE = ExpectedMerchant("Wing Kee Noodle", proxy="1234567", city="Hong Kong")
_GOOD = _fps("Wing Kee Noodle", "1234567", bank="004")
_EDITED_AMOUNT = (_fps("Wing Kee Noodle", "1234567", amount="1000.00")[:-4]
                  + _fps("Wing Kee Noodle", "1234567", amount="10.00")[-4:])

PAYMENT_CORPUS: list[PaymentCase] = [
    PaymentCase(_GOOD, _WING_KEE, "benign", "the shop's own static FPS code"),
    PaymentCase(_fps("WING KEE NOODLE", "1234567"), _WING_KEE, "benign", "case differs"),
    PaymentCase(_fps("Wing Kee Noodle", "1234567", amount="45.50"), _WING_KEE, "benign", "dynamic code with amount"),
    PaymentCase(_fps("Lucky Dessert Co., Ltd.", "7654321"), ExpectedMerchant("LUCKY DESSERT CO LTD", proxy="7654321"),
                "benign", "punctuation differs"),
    PaymentCase(_fps("榮記粉麵", "1234567"), ExpectedMerchant("榮記粉麵", proxy="1234567"), "benign", "Chinese name"),
    PaymentCase(_fps_mobile("NA", "+852-91234567", "004"), ExpectedMerchant("Chan Tai Man", proxy="91234567"),
                "benign", "personal FPS code without a name; the mobile proxy matches"),
    PaymentCase(_fps("Wing Kee Noodle", "1234567", city="Kowloon"),
                ExpectedMerchant("Wing Kee Noodle", proxy="1234567"), "benign", "no city expected"),
    PaymentCase(_fps_with([("26", _acct(("02", "1234567")))], "Wing Kee Noodle",
                          ("64", _tlv(("00", "ZH"), ("01", "榮記粉麵")))),
                ExpectedMerchant("Wing Kee Noodle", proxy="1234567", alternate_name="榮記粉麵"), "benign",
                "bilingual code; the payer knows both names"),
    PaymentCase(_fps_with([("26", _acct(("02", "1234567"))), ("27", _tlv(("00", "A000000333"), ("01", "88881234")))],
                          "Wing Kee Noodle"),
                ExpectedMerchant("Wing Kee Noodle", proxy="1234567", other_accounts=("88881234",)), "benign",
                "multi-scheme code (FPS and another scheme), both accounts the shop's"),
    PaymentCase(_fps("Quick Cash Ltd", "9999999"), _WING_KEE, "malicious", "sticker swapped: other payee"),
    PaymentCase(_fps("Wing Kee Noodle", "9999999"), _WING_KEE, "malicious", "same name, other FPS ID"),
    PaymentCase(_fps("Wіng Kee Noodle", "1234567"), ExpectedMerchant("Wing Kee Noodle"), "malicious",
                "Cyrillic i in the name"),
    PaymentCase(_fps("Wing Kee Noodles", "8888888"), ExpectedMerchant("Wing Kee Noodle"), "malicious",
                "near name, other account"),
    PaymentCase(_GOOD.replace("Hong Kong", "Hong Kang"), _WING_KEE, "malicious", "edited after the CRC was made"),
    PaymentCase(_EDITED_AMOUNT, _WING_KEE, "malicious", "amount raised, CRC of the old payload kept"),
    PaymentCase(_GOOD[:40], _WING_KEE, "malicious", "truncated payload"),
    PaymentCase("https://pay.evil.example/fps?id=1234567", _WING_KEE, "malicious", "a link, not a payment code"),
    PaymentCase(_fps_mobile("NA", "+852-98765432", "024"), ExpectedMerchant("Chan Tai Man", proxy="91234567"),
                "malicious", "personal code with another mobile number"),
    PaymentCase(_fps("NA", "5555555"), ExpectedMerchant("Wing Kee Noodle"), "malicious",
                "no payee name and no account to compare"),
    # REVQ-2..5 (issue 20 review)
    PaymentCase(_fps_with([("26", _acct(("02", "9999999")))], "Quick Cash Ltd",
                          ("64", _tlv(("00", "ZH"), ("01", "Wing Kee Noodle")))), ExpectedMerchant("Wing Kee Noodle"),
                "malicious",
                "two names: tag 59 the attacker's, 64.01 the shop's"),
    PaymentCase(_fps_with([("26", _acct(("02", "9999999"), ("02", "1234567")))], "Wing Kee Noodle"), _WING_KEE,
                "malicious", "FPS ID given twice in one template (attacker's first)"),
    PaymentCase(_fps_with([("26", _acct(("02", "1234567"), ("03", "+852-66666666")))], "Wing Kee Noodle"),
                _WING_KEE, "malicious", "shop's FPS ID plus the attacker's mobile in one template"),
    PaymentCase(_fps_with([("26", _acct(("02", "9999999"))), ("27", _acct(("02", "1234567")))], "Wing Kee Noodle"),
                _WING_KEE, "malicious", "a second FPS template with the attacker's ID first"),
    PaymentCase(_fps_with([("26", _acct(("02", "1234567"))), ("27", _tlv(("00", "A000000333"), ("01", "66661234")))],
                          "Wing Kee Noodle"), _WING_KEE, "malicious", "the attacker's account in another scheme"),
    PaymentCase(_fps("Wing Kee Noodle", "9999999"), ExpectedMerchant("Wing Kee Noodle"), "malicious",
                "same name, other FPS ID, name-only expectation (warn: account not confirmed)"),
]
