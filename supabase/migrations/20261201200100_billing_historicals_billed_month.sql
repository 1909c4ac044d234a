-- Enqueue selects a month's usage bills by billed_month; without an index of its own that was a
-- scan of every month of every tenant (the (tenant, billed_month) key cannot serve it).
create index billing_historicals_billed_month on internal.billing_historicals (billed_month);
