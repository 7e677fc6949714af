/**
 * SQL highlighting for the body of `%%feature_view` cells.
 *
 * A feature view cell is IPython: its first line is the magic, the rest is DuckDB SQL.
 * CodeMirror's `language` facet keeps the first value it is given, so while a cell
 * starts with `%%feature_view` this extension offers JupyterLab's own SQL language at
 * the highest precedence; every other cell keeps the notebook's Python language.
 * The SQL grammar reads the magic line as an operator and a `--option` comment,
 * which keeps it readable too.
 */
import { language, Language } from '@codemirror/language';
import { Extension, Prec, Text } from '@codemirror/state';
import { EditorView } from '@codemirror/view';
import {
  EditorExtensionRegistry,
  IEditorExtensionRegistry,
  IEditorLanguageRegistry
} from '@jupyterlab/codemirror';

/** The cell magic whose body is SQL. */
export const FEATURE_VIEW_MAGIC = '%%feature_view';

/** CSS class set on an editor while it shows a feature view cell as SQL. */
export const SQL_CELL_CLASS = 'fsnb-feature-view-sql';

const NO_ATTRIBUTES: { [name: string]: string } = {};

/** Whether a document is a `%%feature_view` cell (leading blank lines allowed, like IPython). */
export function isFeatureViewCell(doc: Text): boolean {
  const head = doc.sliceString(0, 256).trimStart();
  if (!head.startsWith(FEATURE_VIEW_MAGIC)) {
    return false;
  }
  const next = head.charAt(FEATURE_VIEW_MAGIC.length);
  return next === '' || /\s/.test(next);
}

/** The CodeMirror extension that switches a feature view cell to the given SQL language. */
export function featureViewSql(sql: Language): Extension {
  return Prec.highest([
    language.computeN(['doc'], state =>
      isFeatureViewCell(state.doc) ? [sql] : []
    ),
    EditorView.editorAttributes.compute(['doc'], state =>
      isFeatureViewCell(state.doc) ? { class: SQL_CELL_CLASS } : NO_ATTRIBUTES
    )
  ]);
}

/** JupyterLab's SQL language (the PostgreSQL dialect is closest to DuckDB's), loaded once. */
export async function loadSqlLanguage(
  languages: IEditorLanguageRegistry
): Promise<Language | null> {
  for (const mime of ['text/x-pgsql', 'text/x-sql']) {
    const spec = languages.findByMIME(mime);
    if (!spec) {
      continue;
    }
    const loaded = await languages.getLanguage(spec.name);
    if (loaded?.support) {
      return loaded.support.language;
    }
  }
  return null;
}

/** Register the highlighting with JupyterLab's editor extension registry. */
export async function registerFeatureViewHighlighting(
  extensions: IEditorExtensionRegistry,
  languages: IEditorLanguageRegistry
): Promise<boolean> {
  const sql = await loadSqlLanguage(languages);
  if (!sql) {
    console.warn('fsnb: JupyterLab has no SQL language; %%feature_view cells stay Python');
    return false;
  }
  const extension = featureViewSql(sql);
  extensions.addExtension({
    name: 'fsnb:feature-view-sql',
    factory: () => EditorExtensionRegistry.createImmutableExtension(extension)
  });
  return true;
}
