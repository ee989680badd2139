// A small, safe Markdown renderer for the tutor's replies. A plain ES module: no DOM, no deps.
//
//   import { renderMarkdown } from "/static/js/markdown.js";
//   bubble.innerHTML = renderMarkdown(reply.text);
//
// Safety comes first: the whole input is HTML-escaped before any Markdown is recognised, so the
// only tags in the output are the ones built here (p, br, strong, em, code, pre, ul, ol, li,
// blockquote, h3-h6, hr, a), and every attribute value is built from escaped text. Links are kept
// only for http(s) and relative URLs; anything else (javascript:, data:, vbscript:, ...) stays
// plain text. Replies are rendered again on every streamed delta, so half-written Markdown must
// degrade well: an unterminated ``` fence is a code block to the end, a lone ** stays literal.
//
// Supported: paragraphs (a single newline is a line break, as people type in a chat), **bold**,
// __bold__, *italic*, _italic_, `code`, fenced code blocks with a language class, bullet and
// numbered lists (nested by indentation), > blockquotes, # headings (shown as h3..h6: a reply sits
// under the page's own h1/h2), --- rules, [links](url) and bare http(s) URLs.

const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

/** Escape text for HTML element content and double- or single-quoted attribute values. */
export function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (ch) => ESCAPES[ch]);
}

function unescapeHtml(text) {
  return text.replace(/&(amp|lt|gt|quot|#39);/g, (entity, name) => ({ amp: "&", lt: "<", gt: ">", quot: '"', "#39": "'" })[name]);
}

/**
 * The href for a link target (given escaped, returned escaped), or null if it is not allowed.
 * Allowed: http:, https:, and relative URLs (/path, ./x, ../x, #frag, ?q, path/x). A "scheme:"
 * before any / ? # makes it absolute, and only http(s) schemes pass.
 */
export function safeHref(escapedUrl) {
  const raw = unescapeHtml(escapedUrl);
  // Browsers drop ASCII whitespace and control characters inside a scheme ("java\tscript:"),
  // so a URL containing any of them is refused rather than cleaned.
  if (!raw || /[\u0000-\u0020\u007f-\u009f]/.test(raw)) return null;
  const scheme = /^([^/?#]*?):/.exec(raw);
  if (scheme && !/^https?$/i.test(scheme[1])) return null;
  return escapedUrl;
}

// --- Inline ---------------------------------------------------------------------------------------

// Placeholders keep finished HTML (code spans, links) away from the emphasis rules; NUL cannot be
// in the text because renderMarkdown strips it.
const HOLD = "\u0000";

function inline(escaped) {
  const held = [];
  const hold = (html) => `${HOLD}${held.push(html) - 1}${HOLD}`;

  let out = escaped
    // `code` first: nothing inside a code span is Markdown.
    .replace(/(`+)([^`]|[^`][\s\S]*?[^`])\1(?!`)/g, (_, ticks, code) => hold(`<code>${code.trim() || code}</code>`))
    // [text](url "title"): the title is dropped; a refused URL leaves the text, not a link.
    .replace(/\[([^\]\n]+)\]\(\s*((?:[^\s()]|\([^\s()]*\))+)(?:\s+&quot;[^\n]*?&quot;)?\s*\)/g, (whole, text, url) => {
      const href = safeHref(url);
      if (!href) return text;
      return hold(`<a href="${href}" rel="noopener noreferrer" target="_blank">${emphasis(text)}</a>`);
    })
    // Bare URLs; trailing punctuation belongs to the sentence, not the URL.
    .replace(/\bhttps?:\/\/(?:[^\s&]|&amp;)+/g, (match) => {
      const url = match.replace(/[.,:;!?)\]'*_]+$/, "");
      const rest = match.slice(url.length);
      return hold(`<a href="${url}" rel="noopener noreferrer" target="_blank">${url}</a>`) + rest;
    });

  out = emphasis(out);
  return out.replace(/\u0000(\d+)\u0000/g, (_, i) => held[Number(i)]);
}

function emphasis(text) {
  return text
    .replace(/\*\*(?=\S)([\s\S]*?\S)\*\*/g, "<strong>$1</strong>")
    .replace(/(^|[^\w])__(?=\S)([\s\S]*?\S)__(?!\w)/g, "$1<strong>$2</strong>")
    .replace(/\*(?=[^\s*])([^*\n]*?[^\s*])\*/g, "<em>$1</em>")
    .replace(/\*(?=[^\s*])([^*\n])\*/g, "<em>$1</em>")
    // _x_ only at word edges, so snake_case_names stay as they are.
    .replace(/(^|[^\w])_(?=[^\s_])([^_\n]*?[^\s_]|[^\s_])_(?!\w)/g, "$1<em>$2</em>");
}

function inlineLines(lines) {
  return inline(lines.map((line) => line.trim()).join("\n")).replace(/\n/g, "<br>\n");
}

// --- Blocks ---------------------------------------------------------------------------------------

const FENCE = /^ {0,3}(`{3,}|~{3,})\s*([^\s`]*)/;
const HEADING = /^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$/;
const RULE = /^ {0,3}([-*_])(?:\s*\1){2,}\s*$/;
const QUOTE = /^ {0,3}&gt;\s?/;
const BULLET = /^(\s*)([-*+])\s+(.*)$/;
const NUMBER = /^(\s*)(\d{1,9})[.)]\s+(.*)$/;

function listItem(line) {
  const bullet = BULLET.exec(line);
  if (bullet) return { indent: bullet[1].length, ordered: false, start: 1, text: bullet[3] };
  const number = NUMBER.exec(line);
  if (number) return { indent: number[1].length, ordered: true, start: Number(number[2]), text: number[3] };
  return null;
}

function startsBlock(line) {
  return FENCE.test(line) || HEADING.test(line) || QUOTE.test(line) || RULE.test(line) || listItem(line) !== null;
}

function indentOf(line) {
  return /^\s*/.exec(line)[0].length;
}

function blocks(lines) {
  const html = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];

    if (!line.trim()) {
      i += 1;
      continue;
    }

    const fence = FENCE.exec(line);
    if (fence) {
      const marker = fence[1];
      // The info string's word characters only: a class name, never markup.
      const lang = unescapeHtml(fence[2]).replace(/[^\w+-]/g, "").slice(0, 30);
      const body = [];
      i += 1;
      // Until a closing fence of the same kind and at least the same length, or the end of the
      // text: a reply still streaming has not written its closing fence yet.
      while (i < lines.length && !new RegExp(`^ {0,3}${marker[0] === "`" ? "`" : "~"}{${marker.length},}\\s*$`).test(lines[i])) {
        body.push(lines[i]);
        i += 1;
      }
      i += 1; // the closing fence (or past the end)
      const cls = lang ? ` class="language-${lang}"` : "";
      html.push(`<pre><code${cls}>${body.join("\n")}</code></pre>`);
      continue;
    }

    const heading = HEADING.exec(line);
    if (heading) {
      const level = Math.max(3, heading[1].length); // # and ## become h3 too
      html.push(`<h${level}>${inline(heading[2])}</h${level}>`);
      i += 1;
      continue;
    }

    if (RULE.test(line)) {
      html.push("<hr>");
      i += 1;
      continue;
    }

    if (QUOTE.test(line)) {
      const inner = [];
      while (i < lines.length && lines[i].trim() && (QUOTE.test(lines[i]) || !startsBlock(lines[i]))) {
        inner.push(lines[i].replace(QUOTE, ""));
        i += 1;
      }
      html.push(`<blockquote>${blocks(inner)}</blockquote>`);
      continue;
    }

    const first = listItem(line);
    if (first) {
      const tag = first.ordered ? "ol" : "ul";
      const start = first.ordered && first.start !== 1 ? ` start="${first.start}"` : "";
      const items = [];
      while (i < lines.length) {
        const item = listItem(lines[i]);
        if (!item || item.ordered !== first.ordered || item.indent > first.indent + 1) break;
        const body = [item.text];
        i += 1;
        // The item's own lines: indented ones (a nested list, a continuation) and lazy
        // continuation lines; a blank line ends it unless an indented line follows.
        while (i < lines.length) {
          const next = lines[i];
          if (!next.trim()) {
            if (i + 1 < lines.length && lines[i + 1].trim() && indentOf(lines[i + 1]) > first.indent + 1) {
              body.push("");
              i += 1;
              continue;
            }
            break;
          }
          const nested = listItem(next);
          if (nested && nested.indent <= first.indent + 1) break;
          if (!nested && indentOf(next) <= first.indent && startsBlock(next)) break;
          body.push(indentOf(next) > first.indent ? next.slice(Math.min(indentOf(next), first.indent + 2)) : next);
          i += 1;
        }
        items.push(body);
        // A blank line between items of the same list keeps the list going.
        if (i + 1 < lines.length && !lines[i]?.trim()) {
          const after = listItem(lines[i + 1]);
          if (after && after.ordered === first.ordered && after.indent <= first.indent + 1) i += 1;
        }
      }
      const rendered = items.map((body) => {
        const inner = blocks(body);
        // An item without blank lines is "tight": its first paragraph is shown without <p>.
        if (body.includes("")) return `<li>${inner}</li>`;
        return `<li>${inner.replace(/^<p>([\s\S]*?)<\/p>\n?/, "$1")}</li>`;
      });
      html.push(`<${tag}${start}>${rendered.join("")}</${tag}>`);
      continue;
    }

    const paragraph = [];
    while (i < lines.length && lines[i].trim() && (paragraph.length === 0 || !startsBlock(lines[i]))) {
      paragraph.push(lines[i]);
      i += 1;
    }
    html.push(`<p>${inlineLines(paragraph)}</p>`);
  }
  return html.join("\n");
}

/** Markdown text -> an HTML string, safe to assign to innerHTML. */
export function renderMarkdown(text) {
  if (text === null || text === undefined) return "";
  const escaped = escapeHtml(String(text).replace(/\u0000/g, "").replace(/\r\n?/g, "\n"));
  return blocks(escaped.split("\n"));
}
