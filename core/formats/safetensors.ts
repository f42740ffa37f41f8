// safetensors (https://github.com/huggingface/safetensors): an 8-byte little-endian header length N, N bytes of
// JSON ({"__metadata__": {string: string}, name: {"dtype", "shape", "data_offsets": [begin, end]}}, offsets from
// the end of the header, padded with spaces to a multiple of 8), then the tensors' bytes back to back. Written and
// read here in float32 only (dtype "F32"), what protect's masks are.
import { UserError } from '../errors';

export interface SafeTensor { name: string; dims: number[]; data: Float32Array }
export interface SafeTensors { tensors: SafeTensor[]; metadata: Record<string, string> }

/** The file's bytes: tensors in the order given, metadata as given. */
export function encodeSafetensors({ tensors, metadata }: SafeTensors): Uint8Array {
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length) header['__metadata__'] = metadata;
  let offset = 0;
  const seen = new Set<string>();
  for (const t of tensors) {
    if (t.name === '__metadata__' || seen.has(t.name)) throw new Error(`safetensors: tensor name "${t.name}" is reserved or repeated`);
    seen.add(t.name);
    const n = t.dims.reduce((a, v) => a * v, 1);
    if (n !== t.data.length) throw new Error(`safetensors: "${t.name}" has ${t.data.length} values for shape [${t.dims}]`);
    header[t.name] = { dtype: 'F32', shape: t.dims, data_offsets: [offset, offset + 4 * n] };
    offset += 4 * n;
  }
  let json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.length / 8) * 8;
  if (padded !== json.length) {
    const p = new Uint8Array(padded).fill(0x20);
    p.set(json);
    json = p;
  }
  const out = new Uint8Array(8 + json.length + offset);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  let at = 8 + json.length;
  for (const t of tensors) {
    // Little-endian float32, whatever the machine's order.
    for (let i = 0; i < t.data.length; i++) view.setFloat32(at + 4 * i, t.data[i]!, true);
    at += 4 * t.data.length;
  }
  return out;
}

/** Reads a float32 safetensors file; anything else is a UserError naming `what`. */
export function decodeSafetensors(bytes: Uint8Array, what: string): SafeTensors {
  const bad = (why: string): never => { throw new UserError(`${what} is not a float32 safetensors file: ${why}`); };
  if (bytes.length < 8) bad('shorter than its 8-byte header length');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = Number(view.getBigUint64(0, true));
  if (n > bytes.length - 8) bad(`a header of ${n} bytes in a file of ${bytes.length}`);
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
  } catch (e) {
    return bad(`its header is not JSON (${(e as Error).message})`);
  }
  if (!header || typeof header !== 'object' || Array.isArray(header)) bad('its header is not a JSON object');
  const base = 8 + n;
  const metadata: Record<string, string> = {};
  const tensors: SafeTensor[] = [];
  for (const [name, v] of Object.entries(header)) {
    if (name === '__metadata__') {
      for (const [k, s] of Object.entries((v ?? {}) as Record<string, unknown>)) {
        if (typeof s !== 'string') bad(`__metadata__["${k}"] is not a string`);
        metadata[k] = s as string;
      }
      continue;
    }
    const t = v as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (t?.dtype !== 'F32') bad(`tensor "${name}" has dtype ${JSON.stringify(t?.dtype)}`);
    const shape = t.shape;
    const off = t.data_offsets;
    if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0)) bad(`tensor "${name}" has no valid shape`);
    if (!Array.isArray(off) || off.length !== 2 || !off.every((d) => Number.isInteger(d))) bad(`tensor "${name}" has no valid data_offsets`);
    const [b, e] = off as [number, number];
    const count = (shape as number[]).reduce((a, d) => a * d, 1);
    if (e - b !== 4 * count || b < 0 || base + e > bytes.length) bad(`tensor "${name}" has data_offsets [${b}, ${e}] for shape [${shape}]`);
    const data = new Float32Array(count);
    for (let i = 0; i < count; i++) data[i] = view.getFloat32(base + b + 4 * i, true);
    tensors.push({ name, dims: shape as number[], data });
  }
  return { tensors, metadata };
}
