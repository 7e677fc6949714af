/**
 * The "Feature Store" sidebar: the views and training sets of the store that the
 * active notebook's kernel uses. Clicking a feature inserts its `view:feature`
 * reference at the cursor of the active cell.
 */
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { ServerConnection } from '@jupyterlab/services';
import { refreshIcon } from '@jupyterlab/ui-components';
import { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

import {
  defaultStorePath,
  fetchStore,
  IStoreInfo,
  ITrainingSetInfo,
  IViewInfo,
  kernelStorePath,
  StoreRequestError
} from './api';

/** Build an element with a class and text (text only: names come from files, never as HTML). */
function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className = '',
  text = ''
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (className) {
    node.className = className;
  }
  if (text) {
    node.textContent = text;
  }
  return node;
}

/** The element's whole text as its tooltip (the box may ellipsize it). */
function titled<T extends HTMLElement>(node: T): T {
  node.title = node.textContent ?? '';
  return node;
}

function shortTime(iso: string | null): string {
  if (!iso) {
    return '?';
  }
  return iso.replace('T', ' ').replace(/(:\d\d)(\.\d+)?(\+00:00|Z)$/, '$1').replace(/ 00:00:00$/, '');
}

export function relativeTime(iso: string | null, now: number = Date.now()): string {
  if (!iso) {
    return 'never';
  }
  const seconds = Math.round((now - Date.parse(iso)) / 1000);
  if (Number.isNaN(seconds)) {
    return iso;
  }
  if (seconds < 60) {
    return 'just now';
  }
  for (const [size, unit] of [
    [86400, 'd'],
    [3600, 'h'],
    [60, 'min']
  ] as const) {
    if (seconds >= size) {
      return `${Math.floor(seconds / size)} ${unit} ago`;
    }
  }
  return iso;
}

/** Insert text at the cursor of the active cell of the current notebook; false if there is none. */
export function insertIntoActiveCell(tracker: INotebookTracker, text: string): boolean {
  const editor = tracker.activeCell?.editor;
  if (!editor) {
    return false;
  }
  if (editor.replaceSelection) {
    editor.replaceSelection(text);
  } else {
    const offset = editor.getOffsetAt(editor.getCursorPosition());
    editor.model.sharedModel.updateSource(offset, offset, text);
    editor.setCursorPosition(editor.getPositionAt(offset + text.length)!);
  }
  editor.focus();
  return true;
}

export class FeatureStorePanel extends Widget {
  constructor(private readonly tracker: INotebookTracker) {
    super();
    this.id = 'fsnb-feature-store';
    this.title.caption = 'Feature Store';
    this.addClass('fsnb-sidebar');

    const header = el('div', 'fsnb-sidebar-header');
    header.appendChild(el('h2', 'fsnb-sidebar-title', 'Feature Store'));
    const refresh = el('button', 'fsnb-refresh jp-ToolbarButtonComponent');
    refresh.title = 'Refresh the feature store listing';
    refresh.setAttribute('aria-label', 'Refresh');
    refreshIcon.element({ container: refresh, elementPosition: 'center', tag: 'span' });
    refresh.addEventListener('click', () => void this.refresh());
    header.appendChild(refresh);
    this._location = el('div', 'fsnb-store-path');
    this._body = el('div', 'fsnb-sidebar-body');
    this.node.append(header, this._location, this._body);
    this._showMessage('Open a notebook to see its feature store.');
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    void this.refresh();
  }

  /** Re-read the store of the current notebook (asking its kernel which store it uses). */
  async refresh(): Promise<void> {
    const ticket = ++this._ticket;
    const panel = this.tracker.currentWidget;
    if (!panel) {
      this._location.textContent = '';
      this._showMessage('Open a notebook to see its feature store.');
      return;
    }
    this.node.classList.add('fsnb-loading');
    try {
      const path = await this._storePathOf(panel);
      if (ticket === this._ticket) {
        // <bdi>: the box elides on the left (rtl) while the path itself reads left to right
        this._location.replaceChildren(el('bdi', '', path));
        this._location.title = path;
      }
      const info = await fetchStore(path, this._settings);
      if (ticket === this._ticket) {
        this._render(info);
      }
    } catch (error) {
      if (ticket === this._ticket) {
        if (error instanceof StoreRequestError && error.status === 403) {
          this._showOutsideRoot(error.message);
        } else {
          const text =
            error instanceof StoreRequestError ? error.message : `Cannot read the store: ${String(error)}`;
          this._showMessage(text);
        }
      }
    } finally {
      if (ticket === this._ticket) {
        this.node.classList.remove('fsnb-loading');
        this.node.dataset.refreshed = String(ticket);
      }
    }
  }

  private async _storePathOf(panel: NotebookPanel): Promise<string> {
    const kernel = panel.sessionContext.session?.kernel;
    if (!kernel) {
      return defaultStorePath(panel.context.path);
    }
    const known = this._kernelStores.get(kernel.id);
    // A busy kernel would answer only after its cell: use what it said last time.
    if (kernel.connectionStatus === 'connected' && kernel.status === 'idle') {
      try {
        const fromKernel = await kernelStorePath(kernel);
        if (fromKernel) {
          this._kernelStores.set(kernel.id, fromKernel);
          return fromKernel;
        }
      } catch (error) {
        console.debug('fsnb: kernel did not say which store it uses', error);
      }
    }
    return known ?? defaultStorePath(panel.context.path);
  }

  private _showMessage(text: string): void {
    this._body.replaceChildren(el('p', 'fsnb-message', text));
  }

  /** The store lies outside the folder JupyterLab serves: say so, and how to fix it. */
  private _showOutsideRoot(detail: string): void {
    const box = el('div', 'fsnb-message fsnb-outside-root');
    box.append(
      el('p', 'fsnb-message-title', 'This notebook\'s store is outside the folder JupyterLab serves, so the sidebar cannot show it.'),
      el(
        'p',
        '',
        'To see it here, keep the store inside that folder (for example .fsnb next to the notebook: %fsnb open .fsnb, ' +
          'or fsnb.FeatureStore(".fsnb")), or start JupyterLab from a folder that contains the store.'
      )
    );
    if (detail) {
      box.append(el('p', 'fsnb-message-detail', `Server: ${detail}`));
    }
    this._body.replaceChildren(box);
  }

  private _render(info: IStoreInfo): void {
    const nodes: HTMLElement[] = [];
    if (info.views.length === 0) {
      nodes.push(el('p', 'fsnb-message', 'No feature views yet: define one with a %%feature_view cell.'));
    }
    for (const view of info.views) {
      nodes.push(this._renderView(view));
    }
    if (info.training_sets.length > 0) {
      nodes.push(el('h3', 'fsnb-section-title', 'Training sets'));
      const list = el('ul', 'fsnb-training-sets');
      for (const set of info.training_sets) {
        list.appendChild(this._renderTrainingSet(set));
      }
      nodes.push(list);
    }
    this._body.replaceChildren(...nodes);
  }

  private _renderView(view: IViewInfo): HTMLElement {
    const box = el('section', 'fsnb-view');
    box.dataset.view = view.name;
    const head = el('div', 'fsnb-view-header');
    head.appendChild(titled(el('span', 'fsnb-view-name', view.name)));
    head.appendChild(el('span', 'fsnb-badge', `v${view.version}`));
    if (view.stream) {
      head.appendChild(el('span', 'fsnb-badge fsnb-badge-stream', 'stream'));
    }
    head.appendChild(
      el('span', `fsnb-badge ${view.online ? 'fsnb-badge-online' : 'fsnb-badge-offline'}`, view.online ? 'online' : 'offline only')
    );
    box.appendChild(head);
    if (view.description) {
      box.appendChild(titled(el('div', 'fsnb-view-description', view.description)));
    }
    // a value in parts: times are kept whole (they never wrap inside), the parts between may wrap
    const facts: [string, string | string[]][] = [
      ['entities', view.entities.map(e => (e.type ? `${e.name} (${e.type})` : e.name)).join(', ')],
      ['rows', `${view.rows}` + (view.entity_count != null ? ` · ${view.entity_count} entities` : '')],
      ['time', view.rows ? [shortTime(view.min_ts), ' → ', shortTime(view.max_ts)] : '—'],
      ['ttl', view.ttl ?? 'none']
    ];
    if (view.online) {
      facts.push(['online', ['updated ' + relativeTime(view.online_last_update)]]);
    }
    if (view.log_lag != null) {
      facts.push(['log lag', `${view.log_lag}`]);
    }
    const table = el('dl', 'fsnb-facts');
    for (const [key, value] of facts) {
      const dd = el('dd', `fsnb-fact-${key.replace(' ', '-')}`);
      if (Array.isArray(value)) {
        value.forEach((part, i) => dd.append(i % 2 === 0 ? el('span', 'fsnb-nowrap', part) : part));
      } else {
        dd.textContent = value;
      }
      dd.title = dd.textContent ?? '';
      table.append(el('dt', '', key), dd);
    }
    box.appendChild(table);
    const features = el('ul', 'fsnb-features');
    const windows = new Map((view.aggregations ?? []).map(a => [a.name, `${a.function}(${a.column ?? '*'}) over ${a.window}`]));
    for (const feature of view.features) {
      const ref = `${view.name}:${feature.name}`;
      const item = el('li', 'fsnb-feature-item');
      const button = el('button', 'fsnb-feature', feature.name);
      button.dataset.ref = ref;
      button.title = `${ref}: click to insert it at the cursor`;
      button.addEventListener('click', () => {
        if (!insertIntoActiveCell(this.tracker, ref)) {
          console.warn('fsnb: no active cell to insert', ref);
        }
      });
      item.appendChild(button);
      item.appendChild(titled(el('span', 'fsnb-type', feature.type ?? '')));
      const over = windows.get(feature.name);
      if (over) {
        item.appendChild(titled(el('span', 'fsnb-window', over)));
      }
      features.appendChild(item);
    }
    box.appendChild(features);
    return box;
  }

  private _renderTrainingSet(set: ITrainingSetInfo): HTMLElement {
    const item = el('li', 'fsnb-training-set');
    item.dataset.trainingSet = set.name;
    const head = el('div', 'fsnb-training-set-header');
    head.appendChild(titled(el('span', 'fsnb-training-set-name', set.name)));
    const fp = el('code', 'fsnb-fingerprint', set.fingerprint.slice(0, 12));
    fp.title = set.fingerprint;
    head.appendChild(fp);
    item.appendChild(head);
    const details = [set.rows != null ? `${set.rows} ${set.rows === 1 ? 'row' : 'rows'}` : '', set.features.join(', ')].filter(Boolean);
    if (details.length) {
      item.appendChild(titled(el('div', 'fsnb-training-set-detail', details.join(' · '))));
    }
    return item;
  }

  private readonly _location: HTMLDivElement;
  private readonly _body: HTMLDivElement;
  private readonly _settings = ServerConnection.makeSettings();
  private readonly _kernelStores = new Map<string, string>();
  private _ticket = 0;
}
