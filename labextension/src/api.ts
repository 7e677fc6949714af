/**
 * The fsnb server endpoint (`fsnb/server.py`) and the kernel's current store.
 */
import { PathExt, URLExt } from '@jupyterlab/coreutils';
import { Kernel, ServerConnection } from '@jupyterlab/services';

export interface ITypedName {
  name: string;
  type: string | null;
}

/** A window aggregation of a view's events (its feature is `name`). */
export interface IAggregationInfo {
  name: string;
  function: string;
  column: string | null;
  window: string;
  type: string | null;
}

export interface IViewInfo {
  name: string;
  version: number;
  versions: number;
  description: string;
  entities: ITypedName[];
  timestamp_field: string;
  created_timestamp_field: string | null;
  features: ITypedName[];
  aggregations?: IAggregationInfo[] | null;
  ttl: string | null;
  online: boolean;
  stream: boolean;
  rows: number;
  entity_count: number | null;
  min_ts: string | null;
  max_ts: string | null;
  last_ingested: string | null;
  online_last_update: string | null;
  log_lag: number | null;
}

export interface ITrainingSetInfo {
  name: string;
  fingerprint: string;
  created_at: string | null;
  features: string[];
  rows: number | null;
}

export interface IStoreInfo {
  path: string;
  views: IViewInfo[];
  training_sets: ITrainingSetInfo[];
  generated_at: string;
}

/** A failed request, with the server's one-line explanation. */
export class StoreRequestError extends Error {
  constructor(
    message: string,
    readonly status: number
  ) {
    super(message);
  }
}

/** The server's one-line explanation in an error body (`message`, else `reason`), if any. */
export function errorMessage(body: unknown): string {
  if (body === null || typeof body !== 'object') {
    return '';
  }
  for (const key of ['message', 'reason']) {
    const value = (body as Record<string, unknown>)[key];
    if (typeof value === 'string' && value.trim()) {
      return value.trim();
    }
  }
  return '';
}

/** Fetch the description of the store at `path` (relative to the server root, or absolute inside it). */
export async function fetchStore(
  path: string,
  settings: ServerConnection.ISettings = ServerConnection.makeSettings()
): Promise<IStoreInfo> {
  const url =
    URLExt.join(settings.baseUrl, 'fsnb/api/store') +
    URLExt.objectToQueryString({ path });
  const response = await ServerConnection.makeRequest(url, {}, settings);
  const text = await response.text();
  let body: unknown = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  if (!response.ok) {
    throw new StoreRequestError(errorMessage(body) || `${response.status} ${response.statusText}`, response.status);
  }
  return body as IStoreInfo;
}

/** The default store of a notebook: `.fsnb` next to it (what `%load_ext fsnb` opens). */
export function defaultStorePath(notebookPath: string): string {
  return PathExt.join(PathExt.dirname(notebookPath), '.fsnb');
}

/**
 * Python expression evaluated (silently) in the kernel: the absolute path of the
 * store the notebook uses. Preference: the store the magics opened, then a
 * FeatureStore object in the namespace, then what `%load_ext fsnb` would open.
 */
export const KERNEL_STORE_EXPRESSION = [
  '(lambda sys, os: next((str(p) for p in (',
  "getattr(get_ipython().magics_manager.registry.get('FsnbMagics'), 'path', None),",
  "*(getattr(v, 'path', None) for v in list(globals().values())",
  "if type(v).__name__ == 'FeatureStore' and type(v).__module__ == 'fsnb.store'),",
  ') if p), os.path.abspath(os.environ.get(\'FSNB_STORE\', \'.fsnb\'))))',
  "(__import__('sys'), __import__('os'))"
].join(' ');

/** Read a Python `str` repr (what the kernel sends as text/plain). */
export function parsePythonString(repr: string): string | null {
  const quote = repr.charAt(0);
  if (repr.length < 2 || (quote !== "'" && quote !== '"') || repr.charAt(repr.length - 1) !== quote) {
    return null;
  }
  return repr
    .slice(1, -1)
    .replace(/\\(\\|'|")/g, '$1');
}

/** Ask a Python kernel for the store it uses; null if it cannot tell within timeoutMs. */
export async function kernelStorePath(
  kernel: Kernel.IKernelConnection,
  timeoutMs = 3000
): Promise<string | null> {
  const future = kernel.requestExecute(
    {
      code: '',
      silent: true,
      store_history: false,
      user_expressions: { fsnb_store: KERNEL_STORE_EXPRESSION }
    },
    true
  );
  const timeout = new Promise<null>(resolve => setTimeout(() => resolve(null), timeoutMs));
  const reply = await Promise.race([future.done, timeout]);
  if (!reply) {
    return null;
  }
  const content = reply.content;
  if (content.status !== 'ok') {
    return null;
  }
  const result = content.user_expressions?.fsnb_store as
    | { status: string; data?: { 'text/plain'?: string } }
    | undefined;
  if (result?.status !== 'ok') {
    return null;
  }
  return parsePythonString(result.data?.['text/plain'] ?? '');
}
