/**
 * fsnb's JupyterLab extension: SQL highlighting of `%%feature_view` cells and the
 * "Feature Store" sidebar fed by fsnb's server endpoint.
 */
import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { IEditorExtensionRegistry, IEditorLanguageRegistry } from '@jupyterlab/codemirror';
import { INotebookTracker, NotebookActions } from '@jupyterlab/notebook';
import { LabIcon } from '@jupyterlab/ui-components';

import { registerFeatureViewHighlighting } from './highlight';
import { FeatureStorePanel } from './sidebar';

const STORE_ICON_SVG = `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">
<g class="jp-icon3" fill="#616161"><ellipse cx="12" cy="5" rx="8" ry="3"/>
<path d="M4 7v4c0 1.7 3.6 3 8 3s8-1.3 8-3V7c0 1.7-3.6 3-8 3S4 8.7 4 7zm0 6v4c0 1.7 3.6 3 8 3s8-1.3 8-3v-4c0 1.7-3.6 3-8 3s-8-1.3-8-3z"/></g></svg>`;

export const featureStoreIcon = new LabIcon({ name: 'fsnb:feature-store', svgstr: STORE_ICON_SVG });

export const REFRESH_COMMAND = 'fsnb:refresh-feature-store';

const highlighting: JupyterFrontEndPlugin<void> = {
  id: 'fsnb:feature-view-highlighting',
  description: 'Highlights the body of %%feature_view cells as SQL.',
  autoStart: true,
  requires: [IEditorExtensionRegistry, IEditorLanguageRegistry],
  activate: async (
    _app: JupyterFrontEnd,
    extensions: IEditorExtensionRegistry,
    languages: IEditorLanguageRegistry
  ): Promise<void> => {
    await registerFeatureViewHighlighting(extensions, languages);
  }
};

const sidebar: JupyterFrontEndPlugin<void> = {
  id: 'fsnb:feature-store-sidebar',
  description: 'A sidebar listing the feature views and training sets of the notebook\'s store.',
  autoStart: true,
  requires: [INotebookTracker],
  optional: [ILayoutRestorer],
  activate: (
    app: JupyterFrontEnd,
    tracker: INotebookTracker,
    restorer: ILayoutRestorer | null
  ): void => {
    const panel = new FeatureStorePanel(tracker);
    panel.title.icon = featureStoreIcon;
    app.shell.add(panel, 'left', { rank: 650 });
    restorer?.add(panel, panel.id);

    app.commands.addCommand(REFRESH_COMMAND, {
      label: 'Refresh Feature Store',
      caption: 'Re-read the feature store of the current notebook',
      execute: () => panel.refresh()
    });

    let pending: ReturnType<typeof setTimeout> | null = null;
    const refreshSoon = (): void => {
      if (pending !== null) {
        clearTimeout(pending);
      }
      // Several cells finishing together (Run All) cause one refresh.
      pending = setTimeout(() => {
        pending = null;
        if (panel.isVisible) {
          void panel.refresh();
        }
      }, 300);
    };
    tracker.currentChanged.connect(refreshSoon);
    NotebookActions.executed.connect((_, args) => {
      if (args.notebook === tracker.currentWidget?.content) {
        refreshSoon();
      }
    });
  }
};

export default [highlighting, sidebar];
