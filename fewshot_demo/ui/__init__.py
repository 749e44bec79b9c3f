"""Gradio tabs. Each tab is thin: UI values in, calls on fewshot_demo, UI values out."""
