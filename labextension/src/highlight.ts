/**
 * SQL highlighting for the body of `%%feature_view` cells.
 *
 * A feature view cell is IPython: its first line is the magic, the rest is DuckDB SQL.
 * CodeMirror's `language` facet keeps the value of highest precedence, so while a cell
 * starts with `%%feature_view` this extension adds JupyterLab's own SQL language
 * support at the highest precedence; every other cell keeps the notebook's Python.
 * The SQL grammar reads the magic line as an operator and a `--option` comment,
 * which keeps it readable too.
 */
import { LanguageSupport } from '@codemirror/language';
import { Compartment, EditorState, Extension, Prec, Text } from '@codemirror/state';
import { EditorView, ViewPlugin } from '@codemirror/view';
import {
  EditorExtensionRegistry,
  IEditorExtensionRegistry,
  IEditorLanguageRegistry
} from '@jupyterlab/codemirror';

/** The cell magic whose body is SQL. */
export const FEATURE_VIEW_MAGIC = '%%feature_view';

/** CSS class set on an editor while it shows a feature view cell as SQL. */
export const SQL_CELL_CLASS = 'fsnb-feature-view-sql';

/** Whether a document is a `%%feature_view` cell (leading blank lines allowed, like IPython). */
export function isFeatureViewCell(doc: Text): boolean {
  const head = doc.sliceString(0, 256).trimStart();
  if (!head.startsWith(FEATURE_VIEW_MAGIC)) {
    return false;
  }
  const next = head.charAt(FEATURE_VIEW_MAGIC.length);
  return next === '' || /\s/.test(next);
}

/**
 * The CodeMirror extension that shows a feature view cell in the given SQL language.
 *
 * The SQL support lives in a compartment that is filled while the document is a
 * feature view cell and emptied otherwise: on any transaction that makes the two
 * disagree, and once right after an editor is created with such a cell.
 */
export function featureViewSql(sql: LanguageSupport): Extension {
  const mode = new Compartment();
  const sqlMode: Extension = [
    Prec.highest(sql),
    EditorView.editorAttributes.of({ class: SQL_CELL_CLASS })
  ];
  const isSql = (state: EditorState): boolean => mode.get(state) === sqlMode;
  const sync = (view: EditorView): void => {
    const wanted = isFeatureViewCell(view.state.doc);
    if (wanted !== isSql(view.state)) {
      view.dispatch({ effects: mode.reconfigure(wanted ? sqlMode : []) });
    }
  };
  return [
    mode.of([]),
    EditorState.transactionExtender.of(tr => {
      const wanted = isFeatureViewCell(tr.newDoc);
      return wanted === isSql(tr.startState)
        ? null
        : { effects: mode.reconfigure(wanted ? sqlMode : []) };
    }),
    ViewPlugin.define(view => {
      // An editor created with its text already in place saw no transaction yet;
      // dispatching during construction is not allowed, so do it right after.
      let alive = true;
      void Promise.resolve().then(() => alive && sync(view));
      return { destroy: () => (alive = false) };
    })
  ];
}

/** JupyterLab's SQL language (the PostgreSQL dialect is closest to DuckDB's), loaded once. */
export async function loadSqlLanguage(
  languages: IEditorLanguageRegistry
): Promise<LanguageSupport | null> {
  for (const mime of ['text/x-pgsql', 'text/x-sql']) {
    const spec = languages.findByMIME(mime);
    if (!spec) {
      continue;
    }
    const loaded = await languages.getLanguage(spec.name);
    if (loaded?.support) {
      return loaded.support;
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
