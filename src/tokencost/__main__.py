from tokencost.cli import main

main()
