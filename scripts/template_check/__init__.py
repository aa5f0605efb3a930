"""The template check's parts (scripts/check_template.py runs them): expansion reads the template
and expands it as CloudFormation does (language_extensions, then the SAM transform); compute
knows the compute choices; values reads a template's values; rules holds the project's rules;
lint runs cfn-lint and sets aside what does not apply; compare sets two templates' expansions
side by side, resource by resource."""
