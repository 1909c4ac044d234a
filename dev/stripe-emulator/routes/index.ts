/** Registers every API route. */
import type { Router } from "../router.ts";
import { registerAccountRoutes } from "./account.ts";
import { registerCustomerRoutes } from "./customers.ts";
import { registerEventRoutes } from "./events.ts";
import { registerInvoiceRoutes } from "./invoices.ts";
import { registerLineRoutes } from "./lines.ts";
import { registerPaymentMethodRoutes } from "./payment_methods.ts";
import { registerProductRoutes } from "./products.ts";

export function registerRoutes(r: Router): void {
  registerCustomerRoutes(r);
  registerInvoiceRoutes(r);
  registerLineRoutes(r);
  registerPaymentMethodRoutes(r);
  registerEventRoutes(r);
  registerProductRoutes(r);
  registerAccountRoutes(r);
}
