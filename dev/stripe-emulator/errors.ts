/** Stripe error envelopes (`{error: {type, code, message, param, doc_url}}`) as exceptions. */
export type ErrorType = "api_error" | "card_error" | "idempotency_error" | "invalid_request_error";

export interface ApiErrorInit {
  status: number;
  type: ErrorType;
  message: string;
  code?: string;
  param?: string;
  declineCode?: string;
  /** Validation failures happen before execution begins, so idempotency never stores them. */
  validation?: boolean;
  headers?: Record<string, string>;
}

export class ApiError extends Error {
  readonly status: number;
  readonly type: ErrorType;
  readonly code?: string;
  readonly param?: string;
  readonly declineCode?: string;
  readonly validation: boolean;
  readonly headers: Record<string, string>;

  constructor(init: ApiErrorInit) {
    super(init.message);
    this.status = init.status;
    this.type = init.type;
    this.code = init.code;
    this.param = init.param;
    this.declineCode = init.declineCode;
    this.validation = init.validation ?? false;
    this.headers = init.headers ?? {};
  }

  toBody(requestId: string | null): { error: Record<string, string> } {
    const error: Record<string, string> = { type: this.type, message: this.message };
    if (this.code) {
      error.code = this.code;
      error.doc_url = `https://stripe.com/docs/error-codes/${this.code.replaceAll("_", "-")}`;
    }
    if (this.param) error.param = this.param;
    if (this.declineCode) error.decline_code = this.declineCode;
    if (requestId) error.request_log_url = `https://dashboard.stripe.com/test/logs/${requestId}`;
    return { error };
  }
}

export function invalid(message: string, opts: { code?: string; param?: string } = {}): ApiError {
  return new ApiError({ status: 400, type: "invalid_request_error", message, ...opts });
}

export function missingParam(param: string): ApiError {
  return new ApiError({
    status: 400,
    type: "invalid_request_error",
    code: "parameter_missing",
    param,
    message: `Missing required param: ${param}.`,
    validation: true,
  });
}

export function unknownParam(param: string): ApiError {
  return new ApiError({
    status: 400,
    type: "invalid_request_error",
    code: "parameter_unknown",
    param,
    message: `Received unknown parameter: ${param}`,
    validation: true,
  });
}

export function invalidParam(param: string, message: string, code?: string): ApiError {
  return new ApiError({
    status: 400,
    type: "invalid_request_error",
    code,
    param,
    message,
    validation: true,
  });
}

const NOUNS: Record<string, string> = {
  cus: "customer",
  in: "invoice",
  ii: "invoiceitem",
  il: "invoice line item",
  pm: "PaymentMethod",
  seti: "setupintent",
  evt: "event",
  prod: "product",
};

/** "No such invoice: 'in_x'": 404 when the id is in the URL path, 400 when it is a body param. */
export function noSuch(kind: string, id: string, param = "id"): ApiError {
  return new ApiError({
    status: param === "id" ? 404 : 400,
    type: "invalid_request_error",
    code: "resource_missing",
    param,
    message: `No such ${NOUNS[kind] ?? kind}: '${id}'`,
  });
}

export function apiError(status: number, message?: string): ApiError {
  return new ApiError({
    status,
    type: "api_error",
    message: message ??
      "An unknown error occurred while processing your request. Please try again later.",
  });
}
