// A node's TLS material: reads and checks the CA, certificate and key files the settings name, and gives
// the peer channel credentials and the listener's TLS options (mutual authentication, see listener.ts).

import { createPrivateKey, X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { isIP } from "node:net";
import type { TlsOptions } from "node:tls";
import * as grpc from "@grpc/grpc-js";
import type { NodeId } from "../core/types.ts";
import { configError, parseAddress, type ServerSettings, type TlsClientAuth } from "./config.ts";

export interface ServerTls {
  readonly ca: Buffer;
  readonly cert: Buffer;
  readonly key: Buffer;
  readonly clientAuth: TlsClientAuth;
  /** For dialing peers: trust only the CA, present this node's certificate. */
  readonly peerChannel: grpc.ChannelCredentials;
  /** Subject and expiry of this node's certificate, for the start-up log line. */
  readonly subject: string;
  readonly validTo: string;
}

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/**
 * Reads the TLS files named in the settings, or returns null when TLS is off (no files). Refuses, naming
 * the setting and the file, when a file is unreadable or not PEM, when the key does not belong to the
 * certificate, when the CA did not sign the certificate, when the certificate is expired or not yet valid,
 * or when it does not name the host this node is dialed at (`advertised`, its --peers address).
 */
export function loadServerTls(
  s: ServerSettings,
  nodeId: NodeId,
  advertised: string,
  now: Date,
): ServerTls | null {
  if (s.tlsCaFile === null || s.tlsCertFile === null || s.tlsKeyFile === null) return null;
  const fail = (setting: string, why: string): never => {
    throw configError(setting, why, nodeId);
  };
  const ca = readPem("tlsCaFile", s.tlsCaFile, nodeId);
  const cert = readPem("tlsCertFile", s.tlsCertFile, nodeId);
  const key = readPem("tlsKeyFile", s.tlsKeyFile, nodeId);
  const cas = certificates("tlsCaFile", s.tlsCaFile, ca, nodeId);
  const chain = certificates("tlsCertFile", s.tlsCertFile, cert, nodeId);
  const leaf = chain[0]!;
  let privateKey: ReturnType<typeof createPrivateKey>;
  try {
    privateKey = createPrivateKey(key);
  } catch (err) {
    return fail("tlsKeyFile", `${s.tlsKeyFile} holds no readable private key: ${(err as Error).message}`);
  }
  if (!leaf.checkPrivateKey(privateKey))
    fail("tlsKeyFile", `the key in ${s.tlsKeyFile} does not belong to the certificate in ${s.tlsCertFile}`);
  const issuers = [...cas, ...chain.slice(1)];
  if (!issuers.some((c) => leaf.checkIssued(c) && leaf.verify(c.publicKey)))
    fail(
      "tlsCertFile",
      `${s.tlsCertFile} (${oneLine(leaf.subject)}) is not signed by the CA in ${s.tlsCaFile} (${cas.map((c) => oneLine(c.subject)).join("; ")}); peers would refuse it`,
    );
  const nowMs = now.getTime();
  if (Date.parse(leaf.validTo) <= nowMs)
    fail("tlsCertFile", `the certificate in ${s.tlsCertFile} expired on ${leaf.validTo}; issue a new one`);
  if (Date.parse(leaf.validFrom) > nowMs)
    fail("tlsCertFile", `the certificate in ${s.tlsCertFile} is not valid before ${leaf.validFrom}`);
  const [host] = parseAddress("peers", advertised);
  const bare = host.replace(/^\[(.*)\]$/, "$1");
  const named = isIP(bare) !== 0 ? leaf.checkIP(bare) !== undefined : leaf.checkHost(bare) !== undefined;
  if (!named)
    fail(
      "tlsCertFile",
      `the certificate in ${s.tlsCertFile} does not name ${bare} (its subjectAltName: ${leaf.subjectAltName ?? "none"}), ` +
        `the host this node is reached at (${advertised}); peers and clients would refuse it. Issue it with subjectAltName ${isIP(bare) !== 0 ? "IP" : "DNS"}:${bare}`,
    );
  return {
    ca,
    cert,
    key,
    clientAuth: s.tlsClientAuth,
    peerChannel: grpc.credentials.createSsl(ca, key, cert),
    subject: oneLine(leaf.subject),
    validTo: leaf.validTo,
  };
}

/**
 * Options of the node's TLS listener. A certificate is always requested (peers must present theirs) but
 * never rejected inside the handshake, where a refusal goes unlogged: the listener decides once the
 * handshake is done, by tlsClientAuth, and logs why; PeerService calls are checked per call (listener.ts).
 */
export function listenerTlsOptions(t: ServerTls, handshakeTimeoutMs: number): TlsOptions {
  return {
    ca: t.ca,
    cert: t.cert,
    key: t.key,
    requestCert: true,
    rejectUnauthorized: false,
    ALPNProtocols: ["h2"],
    minVersion: "TLSv1.2",
    handshakeTimeout: handshakeTimeoutMs,
  };
}

function readPem(setting: string, path: string, nodeId: NodeId): Buffer {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (err) {
    throw configError(setting, `cannot read ${path}: ${(err as Error).message}`, nodeId);
  }
  if (!bytes.includes("-----BEGIN "))
    throw configError(setting, `${path} is not a PEM file (no "-----BEGIN" line)`, nodeId);
  return bytes;
}

function certificates(setting: string, path: string, pem: Buffer, nodeId: NodeId): X509Certificate[] {
  const blocks = pem.toString("latin1").match(PEM_CERT) ?? [];
  if (blocks.length === 0) throw configError(setting, `${path} holds no certificate`, nodeId);
  return blocks.map((b, i) => {
    try {
      return new X509Certificate(b);
    } catch (err) {
      throw configError(
        setting,
        `certificate ${i + 1} in ${path} is unreadable: ${(err as Error).message}`,
        nodeId,
      );
    }
  });
}

function oneLine(dn: string): string {
  return dn.split("\n").join(", ");
}
