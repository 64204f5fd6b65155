/** RFC 1035 §4.2.2 / RFC 7766 TCP framing: each message is prefixed with its 16-bit length. */

/** Accumulates stream chunks and yields complete messages; refuses frames above `maxFrame`. */
export class FrameReader {
  private buf: Buffer = Buffer.alloc(0);

  constructor(private readonly maxFrame: number) {}

  /** Bytes of a message begun but not yet complete. */
  get buffered(): number {
    return this.buf.length;
  }

  /** Adds a chunk and returns every complete frame, or 'oversize' when a frame exceeds the limit. */
  push(chunk: Buffer): Buffer[] | 'oversize' {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    const frames: Buffer[] = [];
    let off = 0;
    while (this.buf.length - off >= 2) {
      const len = this.buf.readUInt16BE(off);
      if (len > this.maxFrame) return 'oversize';
      if (this.buf.length - off - 2 < len) break;
      frames.push(this.buf.subarray(off + 2, off + 2 + len));
      off += 2 + len;
    }
    this.buf = off === this.buf.length ? Buffer.alloc(0) : this.buf.subarray(off);
    return frames;
  }
}

/** Prefixes a message with its length. */
export function frame(msg: Buffer): Buffer {
  const out = Buffer.allocUnsafe(msg.length + 2);
  out.writeUInt16BE(msg.length, 0);
  msg.copy(out, 2);
  return out;
}
