// Client TLS: the CA that signed the nodes' certificates and, for mutual TLS, this client's certificate
// and key, from PEM text or files, as gRPC channel credentials.

import { readFileSync } from "node:fs";
import * as grpc from "@grpc/grpc-js";
import { RaftKvClientError } from "./errors.ts";

export interface ClientTlsOptions {
  /** PEM of the CA that signed the nodes' certificates (or caFile). */
  readonly ca?: string | Uint8Array;
  readonly caFile?: string;
  /** PEM of this client's certificate and key, when the nodes require one (or certFile, keyFile). */
  readonly cert?: string | Uint8Array;
  readonly certFile?: string;
  readonly key?: string | Uint8Array;
  readonly keyFile?: string;
}

/** Channel credentials for `o`; throws INVALID_ARGUMENT naming the option or file at fault. */
export function clientTlsCredentials(o: ClientTlsOptions): grpc.ChannelCredentials {
  const ca = pem("ca", o.ca, o.caFile);
  const cert = pem("cert", o.cert, o.certFile);
  const key = pem("key", o.key, o.keyFile);
  if (ca === null)
    throw invalid(
      "ca",
      "TLS needs the CA that signed the nodes' certificates (tls.ca or tls.caFile, --tls-ca)",
    );
  if ((cert === null) !== (key === null))
    throw invalid(
      cert === null ? "cert" : "key",
      "a client certificate and its key go together (tls.cert/certFile and tls.key/keyFile, --tls-cert and --tls-key)",
    );
  return grpc.credentials.createSsl(ca, key, cert);
}

function pem(name: string, text: string | Uint8Array | undefined, file: string | undefined): Buffer | null {
  if (text !== undefined && file !== undefined)
    throw invalid(name, `give either tls.${name} or tls.${name}File, not both`);
  let bytes: Buffer;
  if (file !== undefined) {
    try {
      bytes = readFileSync(file);
    } catch (err) {
      throw invalid(`${name}File`, `cannot read ${file}: ${(err as Error).message}`);
    }
  } else if (text !== undefined) {
    bytes =
      typeof text === "string" ? Buffer.from(text) : Buffer.from(text.buffer, text.byteOffset, text.length);
  } else {
    return null;
  }
  if (!bytes.includes("-----BEGIN "))
    throw invalid(
      file === undefined ? name : `${name}File`,
      `${file ?? `tls.${name}`} is not PEM (no "-----BEGIN" line)`,
    );
  return bytes;
}

function invalid(option: string, why: string): RaftKvClientError {
  return new RaftKvClientError({
    code: "INVALID_ARGUMENT",
    message: `invalid client option tls.${option}: ${why}`,
    hint: "check the TLS files (see the README section TLS)",
  });
}
