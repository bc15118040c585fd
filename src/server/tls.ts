// A node's TLS material: reads and checks the CA, certificate and key files the settings name, and gives
// the peer channel credentials and the listener's TLS options (mutual authentication, see listener.ts).
// Node certificates carry their member identity, URI:raftkv://<cluster-id>/member/<id> in subjectAltName;
// PeerService accepts a connection only as the member its certificate names (peerIdentity below).

import { createPrivateKey, X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { isIP } from "node:net";
import type { PeerCertificate, TlsOptions } from "node:tls";
import * as grpc from "@grpc/grpc-js";
import type { NodeId } from "../core/types.ts";
import type { PeerAuthentication } from "../transport/peer-inbox.ts";
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
 * when it does not name the host this node is dialed at (`advertised`, its --peers address), or when it
 * does not name this node's member identity (and no other member's).
 */
export function loadServerTls(
  s: ServerSettings,
  nodeId: NodeId,
  clusterId: string,
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
  checkOwnIdentity(s.tlsCertFile, leaf, clusterId, nodeId);
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

/** The subjectAltName URI naming member `id` of cluster `clusterId` (the cluster id percent-encoded). */
export function memberIdentityUri(clusterId: string, id: NodeId): string {
  return `raftkv://${encodeURIComponent(clusterId)}/member/${id}`;
}

const MEMBER_URI = /^raftkv:\/\/([^/]+)\/member\/(\d{1,15})$/;

/** The member identities in a subjectAltName (as Node prints it), by cluster id. */
export function memberIdentities(subjectAltName: string | undefined): { clusterId: string; id: NodeId }[] {
  const out: { clusterId: string; id: NodeId }[] = [];
  for (const { kind, value } of subjectAltNames(subjectAltName)) {
    const m = kind === "URI" ? MEMBER_URI.exec(value) : null;
    if (m === null) continue;
    try {
      out.push({ clusterId: decodeURIComponent(m[1]!), id: Number(m[2]) });
    } catch {
      // Not valid percent-encoding: not an identity of ours.
    }
  }
  return out;
}

/**
 * The member a peer's certificate proves, for PeerService: exactly one member identity of this cluster.
 * A client certificate (no identity), one naming another cluster, or one naming several members is not
 * a peer's.
 */
export function peerIdentity(cert: PeerCertificate | undefined, clusterId: string): PeerAuthentication {
  if (cert === undefined || Object.keys(cert).length === 0)
    return { ok: false, detail: "no certificate signed by the cluster CA" };
  const subject = describeCert(cert);
  const all = memberIdentities(cert.subjectaltname);
  const ours = [...new Set(all.filter((m) => m.clusterId === clusterId).map((m) => m.id))];
  if (ours.length === 1) return { ok: true, member: ours[0]! };
  const want = `subjectAltName URI:${memberIdentityUri(clusterId, 0).replace(/0$/, "<id>")}`;
  if (ours.length > 1)
    return {
      ok: false,
      detail: `certificate (${subject}) names members ${ours.join(", ")}: a node certificate names one`,
    };
  if (all.length > 0)
    return {
      ok: false,
      detail: `certificate (${subject}) names ${all.map((m) => memberIdentityUri(m.clusterId, m.id)).join(", ")}, no member of cluster ${JSON.stringify(clusterId)}`,
    };
  return {
    ok: false,
    detail: `certificate (${subject}) names no member identity (a client certificate?): peer calls need a node certificate with ${want}`,
  };
}

/** Refuses to start with a certificate that does not say which member this node is. */
function checkOwnIdentity(file: string, leaf: X509Certificate, clusterId: string, nodeId: NodeId): void {
  const want = memberIdentityUri(clusterId, nodeId);
  const all = memberIdentities(leaf.subjectAltName);
  const ours = [...new Set(all.filter((m) => m.clusterId === clusterId).map((m) => m.id))];
  if (ours.length === 1 && ours[0] === nodeId) return;
  const named =
    all.length === 0
      ? "names no member identity"
      : `names ${all.map((m) => memberIdentityUri(m.clusterId, m.id)).join(", ")}`;
  throw configError(
    "tlsCertFile",
    `the certificate in ${file} ${named}, not this node's alone (${want}); peers refuse peer traffic from a certificate that does not name its sender. Issue it with subjectAltName URI:${want} (README, TLS)`,
    nodeId,
  );
}

/** subjectAltName entries from Node's text form ("DNS:a, IP Address:1.2.3.4, URI:..."), where a value
 *  holding a comma or a quote is printed as a JSON string. */
export function subjectAltNames(text: string | undefined): { kind: string; value: string }[] {
  const out: { kind: string; value: string }[] = [];
  if (text === undefined) return out;
  let i = 0;
  while (i < text.length) {
    const colon = text.indexOf(":", i);
    if (colon < 0) break;
    const kind = text.slice(i, colon);
    let value: string;
    let next: number;
    if (text[colon + 1] === '"') {
      let k = colon + 2;
      while (k < text.length && text[k] !== '"') k += text[k] === "\\" ? 2 : 1;
      try {
        value = JSON.parse(text.slice(colon + 1, k + 1)) as string;
      } catch {
        value = text.slice(colon + 2, k);
      }
      next = k + 1;
    } else {
      const comma = text.indexOf(", ", colon + 1);
      next = comma < 0 ? text.length : comma;
      value = text.slice(colon + 1, next);
    }
    out.push({ kind, value });
    i = text.startsWith(", ", next) ? next + 2 : next + 1;
  }
  return out;
}

function describeCert(c: PeerCertificate): string {
  const cn = c.subject?.CN;
  const issuer = c.issuer?.CN;
  return `subject CN=${String(cn ?? "?")}, issuer CN=${String(issuer ?? "?")}`;
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
