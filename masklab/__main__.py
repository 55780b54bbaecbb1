from masklab.cli import main

main()
