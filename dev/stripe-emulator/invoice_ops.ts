/** Invoice state changes shared by the invoice, line and invoice item endpoints. */
import type { Emulator, RequestInfo } from "./emulator.ts";
import { ApiError, invalid } from "./errors.ts";
import { newId, randomBase62 } from "./ids.ts";
import { type JsonObject, previousAttributes } from "./json.ts";
import type { InvoiceItemRecord, InvoiceRecord } from "./model.ts";
import { customerSnapshot, invoiceAmounts, renderInvoice } from "./render.ts";

/** Stripe's documented cap on invoice items per invoice. */
export const MAX_INVOICE_ITEMS = 250;

export function notEditable(inv: InvoiceRecord, what: string): ApiError {
  return invalid(
    `You can only ${what} on draft invoices. This invoice (${inv.id}) has status ` +
      `'${inv.status}' and is no longer editable.`,
    { code: "invoice_not_editable" },
  );
}

export function recomputeSubtotal(emu: Emulator, inv: InvoiceRecord): void {
  let sum = 0;
  for (const id of inv.items) sum += emu.store.items.get(id)!.amount;
  inv.subtotal = sum;
}

/** Re-indexes for Search after any change. */
export function touchInvoice(emu: Emulator, inv: InvoiceRecord): void {
  emu.indexInvoice(inv, invoiceAmounts(emu, inv).total);
}

export function checkCapacity(inv: InvoiceRecord, adding: number): void {
  if (inv.items.length + adding > MAX_INVOICE_ITEMS) {
    throw invalid(
      `An invoice can contain at most ${MAX_INVOICE_ITEMS} invoice items; this change would ` +
        `bring ${inv.id} to ${inv.items.length + adding}.`,
      { param: "lines" },
    );
  }
}

export function attachItem(emu: Emulator, inv: InvoiceRecord, item: InvoiceItemRecord): void {
  item.invoice = inv.id;
  item.lineId = newId("il");
  emu.store.lines.set(item.lineId, item.id);
  inv.items.push(item.id);
}

export function detachItem(emu: Emulator, inv: InvoiceRecord, item: InvoiceItemRecord): void {
  inv.items = inv.items.filter((id) => id !== item.id);
  if (item.lineId) emu.store.lines.delete(item.lineId);
  item.invoice = null;
  item.lineId = null;
}

/** Renders the invoice, runs `change`, then emits `invoice.updated` if anything changed. */
export function withInvoiceUpdate(
  emu: Emulator,
  inv: InvoiceRecord,
  request: RequestInfo,
  change: () => void,
): void {
  const before = renderInvoice(emu, inv);
  change();
  recomputeSubtotal(emu, inv);
  const after = renderInvoice(emu, inv);
  delete before.lines;
  const afterNoLines = { ...after };
  delete afterNoLines.lines;
  const previous = previousAttributes(before, afterNoLines);
  touchInvoice(emu, inv);
  if (Object.keys(previous).length > 0) emu.emit("invoice.updated", after, request, previous);
}

function emitTransition(
  emu: Emulator,
  inv: InvoiceRecord,
  request: RequestInfo,
  types: string[],
  before: JsonObject,
): void {
  touchInvoice(emu, inv);
  const after = renderInvoice(emu, inv);
  for (const type of types) emu.emit(type, after, request);
  if (emu.behaviour.updatedEventOnTransitions) {
    delete before.lines;
    const cmp = { ...after };
    delete cmp.lines;
    emu.emit("invoice.updated", after, request, previousAttributes(before, cmp));
  }
}

/** draft -> open, or straight to paid when nothing is due (as Stripe does for $0). */
export function finalize(emu: Emulator, inv: InvoiceRecord, request: RequestInfo): void {
  const before = renderInvoice(emu, inv);
  const c = emu.store.customers.get(inv.customer);
  const now = emu.clock.created();
  inv.status = "open";
  inv.transitions.finalized_at = now;
  inv.effectiveAt ??= now;
  if (inv.number === null && c) {
    inv.number = `${c.invoicePrefix}-${String(c.nextInvoiceSequence++).padStart(4, "0")}`;
  }
  const token = `test_${randomBase62(40)}`;
  inv.hostedInvoiceUrl = `https://invoice.stripe.com/i/${emu.accountId}/${token}?s=ap`;
  inv.invoicePdf = `https://pay.stripe.com/invoice/${emu.accountId}/${token}/pdf?s=ap`;
  inv.customerSnapshot = customerSnapshot(c);
  const startingBalance = c?.balance ?? 0;
  inv.startingBalance = startingBalance;
  const amountDue = Math.max(0, inv.subtotal + startingBalance);
  inv.endingBalance = inv.subtotal + startingBalance - amountDue;
  if (c) {
    c.balance = inv.endingBalance;
    c.currency ??= inv.currency;
  }
  if (inv.collectionMethod === "send_invoice" && inv.daysUntilDue !== null) {
    inv.dueDate = now + inv.daysUntilDue * 86_400;
  }
  emitTransition(emu, inv, request, ["invoice.finalized"], before);
  if (amountDue === 0) markPaid(emu, inv, request, { charged: false, outOfBand: false });
}

export function markPaid(
  emu: Emulator,
  inv: InvoiceRecord,
  request: RequestInfo,
  how: { charged: boolean; outOfBand: boolean },
): void {
  const before = renderInvoice(emu, inv);
  inv.amountPaid = invoiceAmounts(emu, inv).amountDue;
  inv.status = "paid";
  inv.paidOutOfBand = how.outOfBand;
  inv.autoAdvance = false;
  inv.transitions.paid_at = emu.clock.created();
  const types = ["invoice.paid"];
  if (!how.outOfBand) types.push("invoice.payment_succeeded");
  emitTransition(emu, inv, request, types, before);
}

export function transition(
  emu: Emulator,
  inv: InvoiceRecord,
  request: RequestInfo,
  to: "void" | "uncollectible",
): void {
  const before = renderInvoice(emu, inv);
  inv.status = to;
  inv.autoAdvance = false;
  if (to === "void") inv.transitions.voided_at = emu.clock.created();
  else inv.transitions.marked_uncollectible_at = emu.clock.created();
  emitTransition(
    emu,
    inv,
    request,
    [to === "void" ? "invoice.voided" : "invoice.marked_uncollectible"],
    before,
  );
}

/** A failed charge: the invoice stays as it was, with one more attempt recorded. */
export function paymentFailed(emu: Emulator, inv: InvoiceRecord, request: RequestInfo): void {
  const before = renderInvoice(emu, inv);
  inv.attemptCount++;
  inv.attempted = true;
  emitTransition(emu, inv, request, ["invoice.payment_failed"], before);
}
