/**
 * The DOM pieces the extension's views share: making an element, and a widget that works only
 * while it is shown (it polls the server while a person can see it, and stops when hidden).
 */
import { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

/** A `tag` element of `className`, appended to `parent`, with `text` when given. */
export function element<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className: string,
  parent?: HTMLElement,
  text?: string
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  node.className = className;
  if (text !== undefined) {
    node.textContent = text;
  }
  parent?.appendChild(node);
  return node;
}

/** An `<option>` of `select`. */
export function option(select: HTMLSelectElement, value: string, label: string): HTMLOptionElement {
  const node = element('option', '', select, label);
  node.value = value;
  return node;
}

/** A widget told when it becomes visible (`onShown(true)`) and when it stops being so. */
export abstract class ShownWidget extends Widget {
  /** Start (`true`) or stop (`false`) what the widget does only while shown. */
  protected abstract onShown(shown: boolean): void;

  dispose(): void {
    if (!this.isDisposed) {
      this.onShown(false);
    }
    super.dispose();
  }

  protected onAfterShow(msg: Message): void {
    this.onShown(true);
  }

  protected onAfterAttach(msg: Message): void {
    if (this.isVisible) {
      this.onShown(true);
    }
  }

  protected onBeforeHide(msg: Message): void {
    this.onShown(false);
  }

  protected onBeforeDetach(msg: Message): void {
    this.onShown(false);
  }
}
