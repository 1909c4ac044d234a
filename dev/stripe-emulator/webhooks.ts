/**
 * Webhook delivery: events are POSTed to one configured endpoint in creation order, signed like
 * Stripe's `Stripe-Signature` (`t=<unix>,v1=<HMAC-SHA256 hex>`), retried on failure. Tests can pause the queue,
 * deliver chosen events in any order, or redeliver one.
 */
export interface WebhookConfig {
  url: string | null;
  secret: string | null;
  /** Attempts per event including the first (Stripe sandbox: 1 + 3 retries). */
  maxAttempts: number;
  /** Delay before retry n (the last value repeats). */
  retryDelaysMs: number[];
  /** Deliver queued events automatically; false holds them until deliver()/flush(). */
  autoDeliver: boolean;
  timeoutMs: number;
}

export interface DeliveryRecord {
  eventId: string;
  type: string;
  attempt: number;
  status: number | null;
  error: string | null;
  at: number;
  trigger: "queue" | "manual";
}

export interface DeliveryResult {
  eventId: string;
  ok: boolean;
  attempts: number;
  status: number | null;
}

export interface DeliverableEvent {
  id: string;
  type: string;
  /** The exact JSON payload to send. */
  payload(): string;
  delivered(ok: boolean): void;
}

const encoder = new TextEncoder();

function hex(bytes: ArrayBuffer): string {
  return Array.from(new Uint8Array(bytes), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** `t=<unix>,v1=<hex HMAC-SHA256 of "t.payload" keyed with the secret string as-is>`. */
export async function signPayload(payload: string, secret: string, t: number): Promise<string> {
  const key = await crypto.subtle.importKey(
    "raw",
    encoder.encode(secret),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  const mac = await crypto.subtle.sign("HMAC", key, encoder.encode(`${t}.${payload}`));
  return `t=${t},v1=${hex(mac)}`;
}

export class WebhookDispatcher {
  config: WebhookConfig = {
    url: null,
    secret: null,
    maxAttempts: 4,
    retryDelaysMs: [100, 500, 2000],
    autoDeliver: true,
    timeoutMs: 10_000,
  };
  readonly deliveries: DeliveryRecord[] = [];
  private queue: string[] = [];
  private running: Promise<void> | null = null;
  private closed = false;
  /** Pending retry sleeps: timer id -> resolver, so close() can end them at once. */
  private sleeps = new Map<ReturnType<typeof setTimeout>, () => void>();
  private aborts = new Set<AbortController>();

  constructor(private readonly lookup: (id: string) => DeliverableEvent | undefined) {}

  configure(patch: Partial<WebhookConfig>): WebhookConfig {
    this.config = { ...this.config, ...patch };
    this.kick();
    return this.publicConfig();
  }

  /** The configuration without the secret, for reporting. */
  publicConfig(): WebhookConfig & { secret: null; hasSecret: boolean } {
    return { ...this.config, secret: null, hasSecret: !!this.config.secret };
  }

  get enabled(): boolean {
    return !!this.config.url && !!this.config.secret;
  }

  pending(): string[] {
    return [...this.queue];
  }

  enqueue(eventId: string): void {
    if (!this.enabled) return;
    this.queue.push(eventId);
    this.kick();
  }

  private kick(): void {
    if (this.closed || this.running || !this.config.autoDeliver || !this.enabled) return;
    if (this.queue.length === 0) return;
    this.running = this.drain().finally(() => {
      this.running = null;
      if (this.queue.length > 0 && this.config.autoDeliver) this.kick();
    });
  }

  private async drain(): Promise<void> {
    while (!this.closed && this.config.autoDeliver && this.queue.length > 0) {
      const id = this.queue[0];
      await this.deliverWithRetries(id, "queue");
      if (this.queue[0] === id) this.queue.shift();
    }
  }

  /** Delivers everything queued (even while paused) and resolves when the queue is empty. */
  async flush(): Promise<void> {
    if (this.running) await this.running;
    while (!this.closed && this.queue.length > 0 && this.enabled) {
      const id = this.queue.shift()!;
      await this.deliverWithRetries(id, "queue");
      if (this.running) await this.running;
    }
  }

  /**
   * Delivers the given events now, in the given order (out of order relative to creation if
   * you like). `dequeue` removes them from the automatic queue so they are not sent twice.
   */
  async deliver(eventIds: string[], dequeue = true): Promise<DeliveryResult[]> {
    if (dequeue) this.queue = this.queue.filter((id) => !eventIds.includes(id));
    const out: DeliveryResult[] = [];
    for (const id of eventIds) out.push(await this.deliverWithRetries(id, "manual"));
    return out;
  }

  private async deliverWithRetries(
    id: string,
    trigger: "queue" | "manual",
  ): Promise<DeliveryResult> {
    const event = this.lookup(id);
    if (!event) return { eventId: id, ok: false, attempts: 0, status: null };
    let status: number | null = null;
    for (let attempt = 1; attempt <= this.config.maxAttempts && !this.closed; attempt++) {
      if (attempt > 1) {
        const delays = this.config.retryDelaysMs;
        await this.sleep(delays[Math.min(attempt - 2, delays.length - 1)] ?? 0);
        if (this.closed) break;
      }
      const result = await this.attempt(event, attempt, trigger);
      status = result.status;
      if (result.ok) {
        event.delivered(true);
        return { eventId: id, ok: true, attempts: attempt, status };
      }
    }
    event.delivered(false);
    return { eventId: id, ok: false, attempts: this.config.maxAttempts, status };
  }

  private async attempt(
    event: DeliverableEvent,
    attempt: number,
    trigger: "queue" | "manual",
  ): Promise<{ ok: boolean; status: number | null }> {
    const { url, secret, timeoutMs } = this.config;
    const record: DeliveryRecord = {
      eventId: event.id,
      type: event.type,
      attempt,
      status: null,
      error: null,
      at: Date.now(),
      trigger,
    };
    this.deliveries.push(record);
    if (!url || !secret) {
      record.error = "no webhook endpoint configured";
      return { ok: false, status: null };
    }
    const payload = event.payload();
    const abort = new AbortController();
    this.aborts.add(abort);
    const timer = setTimeout(() => abort.abort(), timeoutMs);
    try {
      const signature = await signPayload(payload, secret, Math.floor(Date.now() / 1000));
      const res = await fetch(url, {
        method: "POST",
        headers: {
          "content-type": "application/json; charset=utf-8",
          "user-agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
          "stripe-signature": signature,
        },
        body: payload,
        signal: abort.signal,
      });
      await res.body?.cancel();
      record.status = res.status;
      return { ok: res.status >= 200 && res.status < 300, status: res.status };
    } catch (e) {
      // Never echo the request (it carries the signature); the error name is enough.
      record.error = e instanceof Error ? e.name : "error";
      return { ok: false, status: null };
    } finally {
      clearTimeout(timer);
      this.aborts.delete(abort);
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.sleeps.delete(t);
        resolve();
      }, ms);
      this.sleeps.set(t, resolve);
    });
  }

  /** Clears the queue, the delivery log and delivery options; the endpoint (url, secret) stays. */
  reset(): void {
    this.queue = [];
    this.deliveries.length = 0;
    this.config = {
      ...this.config,
      maxAttempts: 4,
      retryDelaysMs: [100, 500, 2000],
      autoDeliver: true,
      timeoutMs: 10_000,
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const [t, resolve] of this.sleeps) {
      clearTimeout(t);
      resolve();
    }
    this.sleeps.clear();
    for (const a of this.aborts) a.abort();
    await this.running?.catch(() => {});
  }
}
