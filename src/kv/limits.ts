// Key, value and client-id limits, and the validation that turns a violation into a typed error.

import { RaftKvError } from "../lib/errors.ts";
import { utf8ByteLength } from "./utf8.ts";

export const DEFAULT_MAX_KEY_BYTES = 4096;
export const DEFAULT_MAX_VALUE_BYTES = 1024 * 1024;
/** Fixed by the command format (one length byte is plenty); not configurable. */
export const MAX_CLIENT_ID_BYTES = 64;

export interface KvLimits {
  /** Largest key, in UTF-8 bytes. */
  readonly maxKeyBytes: number;
  /** Largest value, in bytes. */
  readonly maxValueBytes: number;
}

export const DEFAULT_KV_LIMITS: KvLimits = {
  maxKeyBytes: DEFAULT_MAX_KEY_BYTES,
  maxValueBytes: DEFAULT_MAX_VALUE_BYTES,
};

/** A key is a non-empty, well-formed string (no lone surrogates) of at most `maxKeyBytes` UTF-8 bytes. */
export function validateKey(key: string, limits: KvLimits = DEFAULT_KV_LIMITS): RaftKvError | null {
  if (key.length === 0) return invalid("key is empty", "use a non-empty key");
  const bytes = utf8ByteLength(key);
  if (bytes < 0) return invalid("key contains a lone surrogate", "keys must be well-formed Unicode");
  if (bytes > limits.maxKeyBytes) {
    return tooLarge(`key is ${bytes} bytes, the limit is ${limits.maxKeyBytes}`, "use a shorter key");
  }
  return null;
}

/** A value is at most `maxValueBytes` bytes (empty is fine). */
export function validateValue(value: Uint8Array, limits: KvLimits = DEFAULT_KV_LIMITS): RaftKvError | null {
  if (value.length > limits.maxValueBytes) {
    return tooLarge(
      `value is ${value.length} bytes, the limit is ${limits.maxValueBytes}`,
      "split the value across keys",
    );
  }
  return null;
}

/** A client id is a non-empty, well-formed string of at most MAX_CLIENT_ID_BYTES UTF-8 bytes. */
export function validateClientId(clientId: string): RaftKvError | null {
  const bytes = utf8ByteLength(clientId);
  if (clientId.length === 0 || bytes < 0 || bytes > MAX_CLIENT_ID_BYTES) {
    return invalid(
      `client id must be 1..${MAX_CLIENT_ID_BYTES} bytes of well-formed UTF-8`,
      "use a short random id such as a UUID",
    );
  }
  return null;
}

/** A session sequence number is a safe integer >= 1. */
export function validateSeq(seq: number): RaftKvError | null {
  if (!Number.isSafeInteger(seq) || seq < 1) {
    return invalid(`sequence number ${seq} is not a safe integer >= 1`, "start at 1 and count up");
  }
  return null;
}

function invalid(message: string, hint: string): RaftKvError {
  return new RaftKvError({ code: "INVALID_ARGUMENT", message, hint });
}

function tooLarge(message: string, hint: string): RaftKvError {
  return new RaftKvError({ code: "TOO_LARGE", message, hint });
}
