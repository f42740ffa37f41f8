// The external-data files a model file names, found by walking its protobuf without decoding it: the weights held
// inside the file (raw_data of every initializer, hundreds of MB for GPT-2-small) are skipped by their length, never
// read. For a coordinator that lists a model's files for workers (a --model-url manifest) while the model is loaded:
// decoding it again would hold a second copy of its weights.
import { UserError } from '../errors';
import { EXTERNAL } from './model';

/** The file's bytes [offset, offset + length) (fewer at its end). */
export type ReadAt = (offset: number, length: number) => Uint8Array;

// Field numbers of onnx.proto3 (core/onnx/schema.ts): ModelProto.graph, GraphProto.initializer,
// TensorProto.external_data and .data_location, StringStringEntryProto.key and .value.
const MODEL_GRAPH = 7;
const GRAPH_INITIALIZER = 5;
const TENSOR_EXTERNAL_DATA = 13;
const TENSOR_DATA_LOCATION = 14;
const ENTRY_KEY = 1;
const ENTRY_VALUE = 2;

const WINDOW = 64 * 1024;

/** Reads through a window of the file, refilled where a read leaves it. */
class Cursor {
  private buf: Uint8Array = new Uint8Array(0);
  private at = 0;
  constructor(readonly size: number, private readonly read: ReadAt, private readonly what: string) {}

  byte(pos: number): number {
    if (pos >= this.size) throw this.bad(`ends inside a field at byte ${pos}`);
    if (pos < this.at || pos >= this.at + this.buf.length) {
      this.buf = this.read(pos, Math.min(WINDOW, this.size - pos));
      this.at = pos;
      if (!this.buf.length) throw this.bad(`could not be read at byte ${pos}`);
    }
    return this.buf[pos - this.at]!;
  }

  bytes(from: number, to: number): Uint8Array {
    if (to - from > WINDOW) return this.read(from, to - from);
    this.byte(from);
    if (to > this.at + this.buf.length) { this.buf = this.read(from, Math.min(WINDOW, this.size - from)); this.at = from; }
    return this.buf.subarray(from - this.at, to - this.at);
  }

  /** A varint at `pos`: its value (exact below 2^53) and where the next field starts. */
  varint(pos: number): [number, number] {
    let v = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      const b = this.byte(pos + i);
      v += (b & 0x7f) * scale;
      scale *= 128;
      if (b < 0x80) return [v, pos + i + 1];
    }
    throw this.bad(`has a varint longer than 10 bytes at byte ${pos}`);
  }

  bad(why: string): UserError {
    return new UserError(`${this.what} is not an ONNX model: the file ${why}`);
  }
}

interface Field { field: number; wire: number; value: number; start: number; end: number }

/** The fields of the message in [from, to): a varint's value, a length-delimited field's byte range. */
function* fields(c: Cursor, from: number, to: number): Generator<Field> {
  let pos = from;
  while (pos < to) {
    const [tag, p] = c.varint(pos);
    const field = Math.floor(tag / 8);
    const wire = tag % 8;
    if (wire === 0) {
      const [value, next] = c.varint(p);
      yield { field, wire, value, start: p, end: next };
      pos = next;
    } else if (wire === 2) {
      const [length, start] = c.varint(p);
      const end = start + length;
      if (end > to) throw c.bad(`has a field of ${length} bytes at byte ${start} that runs past its message`);
      yield { field, wire, value: length, start, end };
      pos = end;
    } else if (wire === 1 || wire === 5) {
      pos = p + (wire === 1 ? 8 : 4);
    } else {
      throw c.bad(`has wire type ${wire} at byte ${pos}`);
    }
  }
  if (pos !== to) throw c.bad(`has a field running past its message at byte ${to}`);
}

/**
 * The external-data files the model's initializers name (their `location`s), in first-use order: what
 * externalLocations (core/onnx/model.ts) gives for the decoded model. `size`: the file's length in bytes.
 */
export function scanExternalLocations(size: number, read: ReadAt, what: string): string[] {
  const c = new Cursor(size, read, what);
  const text = new TextDecoder();
  const out = new Set<string>();
  for (const g of fields(c, 0, size)) {
    if (g.field !== MODEL_GRAPH || g.wire !== 2) continue;
    for (const t of fields(c, g.start, g.end)) {
      if (t.field !== GRAPH_INITIALIZER || t.wire !== 2) continue;
      let external = false;
      let location: string | undefined;
      for (const f of fields(c, t.start, t.end)) {
        if (f.field === TENSOR_DATA_LOCATION && f.wire === 0) external = f.value === EXTERNAL;
        if (f.field !== TENSOR_EXTERNAL_DATA || f.wire !== 2) continue;
        let key: string | undefined;
        let value: string | undefined;
        for (const e of fields(c, f.start, f.end)) {
          if (e.wire !== 2) continue;
          if (e.field === ENTRY_KEY) key = text.decode(c.bytes(e.start, e.end));
          if (e.field === ENTRY_VALUE) value = text.decode(c.bytes(e.start, e.end));
        }
        if (key === 'location' && value) location ??= value;
      }
      if (external && location) out.add(location);
    }
  }
  return [...out];
}
