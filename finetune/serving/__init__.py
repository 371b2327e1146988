"""After training: merge (export), serve with vLLM / SGLang, chat."""
