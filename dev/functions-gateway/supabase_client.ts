/**
 * The only module that imports supabase-js (test and dev use only): tests call the functions
 * with `functions.invoke`, exactly as the dashboard does.
 */
import { createClient, type SupabaseClient } from "npm:@supabase/supabase-js@2.119.1";

export { createClient, type SupabaseClient };

/** Options for {@link dashboardClient}. */
export interface DashboardClientOptions {
  /** The session's access token; omit for a signed-out browser. */
  accessToken?: string;
}

/**
 * A client as the dashboard builds it: the project URL and its publishable key, with the signed-in
 * user's access token (third-party `accessToken`, since there is no local Auth server).
 */
export function dashboardClient(
  url: string,
  apiKey: string,
  options: DashboardClientOptions = {},
): SupabaseClient {
  const token = options.accessToken;
  return createClient(url, apiKey, {
    auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
    ...(token ? { accessToken: () => Promise.resolve(token) } : {}),
  });
}
