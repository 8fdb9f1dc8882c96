/**
 * Turns inspector records into text for a person (with or without ANSI
 * colour) or into one JSON line each for a script. Pure: strings out.
 *
 * @module
 */

import type {
  EndRecord,
  EventRecord,
  FrameRecord,
  HandshakeRecord,
  HeaderField,
  IgnoredRecord,
  InspectRecord,
  ProtocolErrorRecord,
  Role,
} from "./records.ts";

/** Options of {@linkcode renderText}. */
export interface RenderOptions {
  /** Use ANSI colours. */
  color: boolean;
  /** Put before each record's title, such as `#1 ` for the first proxied connection. */
  label?: string;
}

interface Paint {
  title(text: string): string;
  dim(text: string): string;
  name(text: string): string;
  good(text: string): string;
  bad(text: string): string;
  event(text: string): string;
  from(role: Role, text: string): string;
}

const ansi = (open: number, close: number) => (text: string) =>
  `\x1b[${open}m${text}\x1b[${close}m`;

const COLOR: Paint = {
  title: ansi(1, 22),
  dim: ansi(2, 22),
  name: ansi(33, 39),
  good: ansi(32, 39),
  bad: ansi(31, 39),
  event: ansi(36, 39),
  from: (role, text) => role === "client" ? ansi(35, 39)(text) : ansi(34, 39)(text),
};

const same = (text: string) => text;
const PLAIN: Paint = {
  title: same,
  dim: same,
  name: same,
  good: same,
  bad: same,
  event: same,
  from: (_role, text) => text,
};

/**
 * One record as lines of text, ending in a newline.
 *
 * @param record The record.
 * @param options Colour, and a label for the title line.
 * @returns The text.
 *
 * @example A ping from a server, in plain text
 * ```ts
 * import { explain } from "./explain.ts";
 * import { renderText } from "./render.ts";
 * const [frame] = explain(new Uint8Array([0x89, 0x00]));
 * console.assert(renderText(frame!, { color: false }).includes("opcode  ....1001  0x9"));
 * ```
 */
export function renderText(record: InspectRecord, options: RenderOptions): string {
  const paint = options.color ? COLOR : PLAIN;
  const label = options.label ?? "";
  let lines: string[];
  switch (record.kind) {
    case "handshake":
      lines = handshakeLines(record, paint, label);
      break;
    case "frame":
      lines = frameLines(record, paint, label);
      break;
    case "ignored":
      lines = ignoredLines(record, paint, label);
      break;
    case "end":
      lines = endLines(record, paint, label);
      break;
  }
  // A blank line between records.
  return lines.join("\n") + "\n\n";
}

/**
 * One record as a line of JSON, ending in a newline.
 *
 * @param record The record.
 * @param extra Fields to put first, such as the proxied connection's number.
 * @returns The line.
 *
 * @example
 * ```ts
 * import { explain } from "./explain.ts";
 * import { renderJson } from "./render.ts";
 * const [frame] = explain(new Uint8Array([0x89, 0x00]));
 * console.assert(JSON.parse(renderJson(frame!)).opcodeName === "PING");
 * ```
 */
export function renderJson(record: InspectRecord, extra: Record<string, unknown> = {}): string {
  return JSON.stringify({ ...extra, ...record }) + "\n";
}

function direction(role: Role, paint: Paint): string {
  return paint.from(role, role === "client" ? "client → server" : "server → client");
}

// ---- Handshake ----

function handshakeLines(record: HandshakeRecord, paint: Paint, label: string): string[] {
  const what = record.from === "client" ? "handshake request" : "handshake response";
  const lines = [
    `${label}${paint.title(what)}  ${direction(record.from, paint)}  @${record.offset}  ${
      plural(record.length, "byte")
    }`,
  ];
  if (record.startLine !== null) lines.push(`  ${record.startLine}`);
  for (const [name, value] of record.headers) lines.push(`  ${paint.name(name)}: ${value}`);
  const accept = record.accept;
  if (accept !== null) {
    lines.push(`  ${paint.title("accept token")} (RFC 6455 §4.2.2)`);
    lines.push(`    key         ${accept.key}`);
    lines.push(`    key + GUID  ${accept.keyWithGuid}`);
    lines.push(`    SHA-1       ${accept.sha1Hex}`);
    lines.push(
      `    base64      ${accept.expected}  ${paint.dim("the Sec-WebSocket-Accept to expect")}`,
    );
    if (accept.received !== null) {
      const mark = accept.correct === true ? paint.good("✓ correct") : paint.bad("✗ wrong");
      lines.push(`    received    ${accept.received}  ${mark}`);
    }
  }
  const verdict = record.verdict;
  const status = verdict.status === null ? "" : ` ${verdict.status}`;
  const summary = `${verdict.event}${status}`;
  const mark = !verdict.checked
    ? paint.dim(summary)
    : verdict.ok
    ? paint.good(`✓ ${summary}`)
    : paint.bad(`✗ ${summary}`);
  lines.push(`  module: ${mark}  ${verdict.message}`);
  if (record.deflate !== null) {
    const what = record.from === "client" ? "offered" : "accepted";
    lines.push(`  permessage-deflate ${what}: ${record.deflate}`);
  }
  for (const note of record.notes) lines.push(`  ${paint.dim(`note: ${note}`)}`);
  return lines;
}

// ---- Frames ----

const SHORT_NAMES: Readonly<Record<string, string>> = {
  "payload length": "length",
};

function frameLines(record: FrameRecord, paint: Paint, label: string): string[] {
  const payloadLength = record.payload?.length ?? 0;
  const headerLength = record.length - payloadLength;
  const sizes = record.payload === null
    ? `${plural(record.length, "byte")} of header`
    : `${plural(record.length, "byte")} = header ${headerLength} + payload ${payloadLength}`;
  const status = record.complete
    ? ""
    : record.error !== null
    ? paint.bad("  (read up to the failing byte)")
    : paint.bad("  (incomplete: the stream ended)");
  const name = record.opcodeName === null ? "" : `  ${paint.title(record.opcodeName)}`;
  const lines = [
    `${label}${paint.title(`frame ${record.index}`)}${name}  ${
      direction(record.from, paint)
    }  @${record.offset}  ${sizes}${status}`,
  ];
  const error = record.error;
  let errorShown = false;
  const showErrorAfter = (offset: number) => {
    if (error !== null && !errorShown && error.offset <= offset) {
      lines.push(errorLine(error, record, paint));
      errorShown = true;
    }
  };

  // One group of rows per byte for the bit fields, one row for each
  // multi-byte field.
  const headerBytes = record.header === "" ? [] : record.header.split(" ");
  let lastOffset = -1;
  for (const field of record.fields) {
    const at = field.offset - record.offset;
    if (field.width < 8) {
      const byte = parseInt(headerBytes[at] ?? "0", 16);
      const first = field.offset !== lastOffset;
      const lead = first
        ? `  ${pad(`@${field.offset}`, 6)}${pad(headerBytes[at] ?? "", 13)}`
        : " ".repeat(21);
      lines.push(
        `${lead}${paint.name(pad(SHORT_NAMES[field.name] ?? field.name, 8))}${
          bitPattern(byte, field, paint)
        }  ${pad(shortValue(field), 5)} ${field.meaning}`,
      );
      lastOffset = field.offset;
      if (field.bit + field.width === 8) showErrorAfter(field.offset);
      continue;
    }
    const bytes = headerBytes.slice(at, at + field.width / 8).join(" ");
    lines.push(
      `  ${pad(`@${field.offset}`, 6)}${pad(bytes, 13)}${paint.name(field.name)}  ${
        field.name === "masking key" ? "" : `${field.value}  `
      }${field.meaning}`,
    );
    lines.push(`${" ".repeat(21)}${paint.dim(field.bits)}`);
    showErrorAfter(field.offset + field.width / 8 - 1);
  }
  // Header bytes the fields above do not cover: a header cut short.
  const covered = record.fields.reduce(
    (end, field) =>
      Math.max(end, field.offset - record.offset + Math.ceil((field.bit + field.width) / 8)),
    0,
  );
  if (covered < headerBytes.length) {
    lines.push(
      `  ${pad(`@${record.offset + covered}`, 6)}${headerBytes.slice(covered).join(" ")}  ${
        paint.dim("(the stream ends inside this field)")
      }`,
    );
  }
  showErrorAfter(record.offset + headerBytes.length - 1);

  const payload = record.payload;
  if (payload !== null) {
    if (payload.length === 0 && record.complete) {
      lines.push(`  ${pad(`@${payload.offset}`, 6)}${paint.name("payload")}  none`);
    } else {
      const more = payload.length > payload.shown ? paint.dim(" …") : "";
      lines.push(
        `  ${pad(`@${payload.offset}`, 6)}${paint.name("payload")}  ${
          plural(payload.length, "byte")
        }${record.complete ? "" : paint.bad(` of ${record.payloadLength ?? "?"}`)}`,
      );
      if (payload.shown > 0 && payload.masked !== null && record.maskingKey !== null) {
        const key = record.maskingKey.split(" ");
        const repeated = Array.from({ length: payload.shown }, (_, i) => key[i % 4]).join(" ");
        lines.push(`        masked    ${payload.masked}${more}`);
        lines.push(`        XOR key   ${paint.dim(repeated)}`);
      }
      if (payload.shown > 0) {
        const label = payload.masked === null ? "bytes   " : "unmasked";
        lines.push(
          `        ${label}  ${payload.unmasked}${more}  ${paint.dim(`|${payload.ascii}|`)}`,
        );
      }
    }
  }
  for (const note of record.notes) lines.push(`  ${paint.dim(`note: ${note}`)}`);
  showErrorAfter(Number.POSITIVE_INFINITY);
  for (const event of record.events) lines.push(`  event  ${paint.event(describeEvent(event))}`);
  return lines;
}

function errorLine(error: ProtocolErrorRecord, record: FrameRecord, paint: Paint): string {
  const payloadStart = record.payload?.offset ?? Number.POSITIVE_INFINITY;
  const where = error.offset >= payloadStart
    ? `payload byte ${error.offset - payloadStart} (${hexByte(error.byte)}${
      record.masked === true ? " unmasked" : ""
    })`
    : `header byte ${error.frameOffset} (${hexByte(error.byte)})`;
  return paint.bad(
    `  ✗ @${error.offset}  ${where}: the module fails the connection with close ${error.code}` +
      `${error.codeName === "" ? "" : ` ${error.codeName}`}: ${error.reason}`,
  );
}

function bitPattern(byte: number, field: HeaderField, paint: Paint): string {
  const before = ".".repeat(field.bit);
  const after = ".".repeat(8 - field.bit - field.width);
  const bits = byte.toString(2).padStart(8, "0").slice(field.bit, field.bit + field.width);
  return `${before === "" ? "" : paint.dim(before)}${bits}${after === "" ? "" : paint.dim(after)}`;
}

function shortValue(field: HeaderField): string {
  if (field.name === "opcode" && typeof field.value === "number") {
    return `0x${field.value.toString(16)}`;
  }
  return String(field.value);
}

/**
 * An event in a few words, as the text output shows it.
 *
 * @param event The event record.
 * @returns For example `TextMessage "Hello"` or `CloseConnection 1000 NORMAL_CLOSURE "bye"`.
 */
export function describeEvent(event: EventRecord): string {
  switch (event.type) {
    case "TextMessage":
    case "BytesMessage": {
      const body = event.type === "TextMessage"
        ? JSON.stringify(event.data) +
          (event.data.length < event.length ? ` … (${event.length} characters)` : "")
        : `${plural(event.length, "byte")}${event.length === 0 ? "" : `: ${event.data}`}${
          event.length * 3 - 1 > event.data.length ? " …" : ""
        }`;
      const flags = [];
      if (!event.frameFinished) flags.push("frame continues");
      if (!event.messageFinished) flags.push("message continues");
      return `${event.type} ${body}${flags.length === 0 ? "" : ` (${flags.join(", ")})`}`;
    }
    case "Ping":
    case "Pong":
      return `${event.type} ${plural(event.length, "byte")}${
        event.length === 0 ? "" : `: ${event.data}`
      }`;
    case "CloseConnection":
      return `CloseConnection ${event.code}${event.codeName === "" ? "" : ` ${event.codeName}`}${
        event.reason === "" ? "" : ` ${JSON.stringify(event.reason)}`
      }`;
  }
}

// ---- The rest ----

function ignoredLines(record: IgnoredRecord, paint: Paint, label: string): string[] {
  const more = record.length * 3 - 1 > record.preview.length ? " …" : "";
  return [
    `${label}${paint.title("not read")}  @${record.offset}  ${
      plural(record.length, "byte")
    }: ${record.preview}${more}`,
    `  ${paint.dim(record.reason)}`,
  ];
}

function endLines(record: EndRecord, paint: Paint, label: string): string[] {
  const lines = [
    `${label}${paint.title("end of stream")}  @${record.offset}  ${paint.dim(record.note)}`,
  ];
  for (const event of record.events) lines.push(`  event  ${paint.event(describeEvent(event))}`);
  return lines;
}

function plural(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? "" : "s"}`;
}

function pad(text: string, width: number): string {
  return text.length >= width ? `${text} ` : text.padEnd(width);
}

function hexByte(value: number): string {
  return value.toString(16).padStart(2, "0");
}
