/** All emulator state: maps by id plus the sorted indexes the list endpoints page through. */
import type {
  CustomerRecord,
  EventRecord,
  InvoiceItemRecord,
  InvoiceRecord,
  PaymentMethodRecord,
  ProductRecord,
  SetupIntentRecord,
} from "./model.ts";
import { type Ordered, SortedIndex } from "./sorted_index.ts";

/** A map of per-key sorted indexes (e.g. invoices per customer). */
export class GroupedIndex<T extends Ordered> {
  private groups = new Map<string, SortedIndex<T>>();

  get(key: string): SortedIndex<T> | undefined {
    return this.groups.get(key);
  }

  insert(key: string, item: T): void {
    let group = this.groups.get(key);
    if (!group) {
      group = new SortedIndex<T>();
      this.groups.set(key, group);
    }
    group.insert(item);
  }

  remove(key: string, item: T): void {
    this.groups.get(key)?.remove(item);
  }
}

export class Store {
  private seq = 0;

  readonly customers = new Map<string, CustomerRecord>();
  /** Live (not deleted) customers. */
  readonly customerIndex = new SortedIndex<CustomerRecord>();

  readonly invoices = new Map<string, InvoiceRecord>();
  readonly invoiceIndex = new SortedIndex<InvoiceRecord>();
  readonly invoicesByCustomer = new GroupedIndex<InvoiceRecord>();

  readonly items = new Map<string, InvoiceItemRecord>();
  readonly itemIndex = new SortedIndex<InvoiceItemRecord>();
  readonly itemsByCustomer = new GroupedIndex<InvoiceItemRecord>();
  /** `il_` line id -> `ii_` invoice item id. */
  readonly lines = new Map<string, string>();

  readonly paymentMethods = new Map<string, PaymentMethodRecord>();
  readonly paymentMethodsByCustomer = new GroupedIndex<PaymentMethodRecord>();

  readonly setupIntents = new Map<string, SetupIntentRecord>();

  readonly products = new Map<string, ProductRecord>();
  readonly productIndex = new SortedIndex<ProductRecord>();

  readonly events = new Map<string, EventRecord>();
  readonly eventIndex = new SortedIndex<EventRecord>();

  /** Strictly increasing tie-breaker for objects created within the same second. */
  nextSeq(): number {
    return ++this.seq;
  }

  addCustomer(c: CustomerRecord): void {
    this.customers.set(c.id, c);
    this.customerIndex.insert(c);
  }

  addInvoice(inv: InvoiceRecord): void {
    this.invoices.set(inv.id, inv);
    this.invoiceIndex.insert(inv);
    this.invoicesByCustomer.insert(inv.customer, inv);
  }

  removeInvoice(inv: InvoiceRecord): void {
    inv.deleted = true;
    this.invoiceIndex.remove(inv);
    this.invoicesByCustomer.remove(inv.customer, inv);
  }

  addItem(item: InvoiceItemRecord): void {
    this.items.set(item.id, item);
    this.itemIndex.insert(item);
    this.itemsByCustomer.insert(item.customer, item);
  }

  removeItem(item: InvoiceItemRecord): void {
    item.deleted = true;
    this.itemIndex.remove(item);
    this.itemsByCustomer.remove(item.customer, item);
    if (item.lineId) this.lines.delete(item.lineId);
  }

  addProduct(p: ProductRecord): void {
    this.products.set(p.id, p);
    this.productIndex.insert(p);
  }

  addEvent(e: EventRecord): void {
    this.events.set(e.id, e);
    this.eventIndex.insert(e);
  }
}
