"""The report's inline stylesheet: system fonts only, print-friendly, no external resources.

No '<' or '&' anywhere, so the page stays well-formed XML as well as HTML.
"""

CSS = """
:root {
  --ink: #1f2933; --muted: #616e7c; --line: #e4e7eb; --bg: #f5f7fa; --card: #ffffff;
  --accent: #0072B2; --good: #1b7f4b; --bad: #b42318; --warn: #a15c07;
}
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body {
  margin: 0; background: var(--bg); color: var(--ink);
  font: 14px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
}
.page { max-width: 1120px; margin: 0 auto; padding: 32px 24px 48px; }
header.top { display: flex; justify-content: space-between; align-items: flex-start; gap: 24px;
  padding-bottom: 20px; border-bottom: 1px solid var(--line); margin-bottom: 24px; }
.brand { font-size: 12px; letter-spacing: .12em; text-transform: uppercase; color: var(--accent);
  font-weight: 600; margin: 0 0 6px; }
h1 { font-size: 26px; line-height: 1.25; margin: 0 0 8px; font-weight: 650; overflow-wrap: anywhere; }
.meta { color: var(--muted); font-size: 13px; margin: 0; }
.meta code { font-size: 12.5px; background: #eef1f5; padding: 1px 6px; border-radius: 4px; color: var(--ink); }
.meta span + span::before { content: "·"; margin: 0 8px; color: #c1c7cd; }
.badge { display: inline-block; padding: 4px 12px; border-radius: 999px; font-size: 12px; font-weight: 600;
  text-transform: uppercase; letter-spacing: .06em; white-space: nowrap; border: 1px solid transparent; }
.badge.ok { background: #e6f4ea; color: var(--good); border-color: #b7dfc3; }
.badge.bad { background: #fdecea; color: var(--bad); border-color: #f5c2bd; }
.badge.run { background: #e7f1fa; color: var(--accent); border-color: #b9d5ec; }
.badge.other { background: #eef1f5; color: var(--muted); border-color: var(--line); }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(122px, 1fr)); gap: 12px; margin-bottom: 28px; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 10px; padding: 14px 16px; }
.card .label { font-size: 12px; color: var(--muted); text-transform: uppercase; letter-spacing: .05em; margin: 0; }
.card .value { font-size: 24px; font-weight: 650; margin: 4px 0 0; font-variant-numeric: tabular-nums; }
.card .hint { font-size: 11.5px; color: var(--muted); margin: 2px 0 0; }
section { background: var(--card); border: 1px solid var(--line); border-radius: 12px; padding: 20px 24px;
  margin-bottom: 20px; }
section h2 { font-size: 17px; margin: 0 0 4px; font-weight: 650; }
section .lede { color: var(--muted); margin: 0 0 16px; font-size: 13px; }
h3 { font-size: 14px; margin: 18px 0 8px; }
.grid2 { display: grid; grid-template-columns: repeat(auto-fit, minmax(440px, 1fr)); gap: 20px; align-items: start; }
figure { margin: 0; }
svg.chart { display: block; width: 100%; height: auto; max-width: 100%; }
.table-wrap { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-size: 13px; font-variant-numeric: tabular-nums; }
th, td { text-align: left; padding: 7px 12px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-size: 12px; color: var(--muted); font-weight: 600; text-transform: uppercase; letter-spacing: .04em;
  background: #fafbfc; }
td.num, th.num { text-align: right; }
tbody tr:last-child td { border-bottom: none; }
td.best { font-weight: 700; }
td.key { color: var(--muted); font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12.5px;
  overflow-wrap: anywhere; }
td.val { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12.5px;
  overflow-wrap: anywhere; }
pre { background: #0f1720; color: #e4e7eb; padding: 14px 16px; border-radius: 8px; overflow-x: auto;
  font-size: 12.5px; line-height: 1.45; margin: 10px 0 0; }
details { margin-top: 14px; }
summary { cursor: pointer; color: var(--accent); font-weight: 600; font-size: 13px; }
.empty { color: var(--muted); font-style: italic; margin: 0; }
ul.notes { margin: 0; padding-left: 20px; }
ul.notes li { margin: 4px 0; }
footer { color: var(--muted); font-size: 12px; text-align: center; margin-top: 28px; }
@media print {
  body { background: #ffffff; }
  .page { padding: 0; }
  section, .card { break-inside: avoid; }
}
"""
